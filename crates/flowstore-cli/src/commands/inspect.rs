//! `flowstore inspect`: pretty-print a storage reference.

use crate::backends;
use crate::output::Output;

/// Arguments of `flowstore inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The storage reference (JSON file, or `-` for stdin).
    reference: String,
}

/// Runs the command.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let reference = backends::read_reference(&args.reference)?;
    if out.json() {
        out.data(&reference.to_json_pretty());
        return Ok(());
    }
    let registry = backends::registry()?;
    let known = registry.types().contains(&reference.type_name.as_str());
    out.data(&format!(
        "Storage:  {}{}",
        reference.type_name,
        if known {
            ""
        } else {
            " (not compiled into this flowstore)"
        }
    ));
    out.data(&format!("Written by version {}", reference.version));
    out.data(&format!("Flows ({}):", reference.flows.len()));
    for (name, location) in &reference.flows {
        out.data(&format!("  {name}"));
        out.data(&format!("    location: {location}"));
        match reference.flow_digests.get(name) {
            Some(d) => out.data(&format!("    digest:   {d}")),
            None => out.data("    digest:   (none recorded; the flow is not integrity-checked)"),
        }
    }
    if !reference.secrets.is_empty() {
        out.data(&format!(
            "Secrets the agent must resolve: {}",
            reference.secrets.join(", ")
        ));
    }
    if !reference.labels.is_empty() {
        out.data(&format!("Labels: {}", reference.labels.join(", ")));
    }
    if !reference.fields.is_empty() {
        out.data("Settings:");
        for (k, v) in &reference.fields {
            out.data(&format!("  {k}: {v}"));
        }
    }
    Ok(())
}

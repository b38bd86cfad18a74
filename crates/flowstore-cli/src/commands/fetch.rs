//! `flowstore fetch`: fetch a flow from a reference and verify it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use flowstore::flow::PICKLE_NOTE;
use flowstore::FlowContent;

use crate::backends;
use crate::output::{human_size, Output};

/// Arguments of `flowstore fetch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The storage reference (JSON file written by `register`, or `-` for stdin).
    reference: String,
    /// Which flow (needed when the reference holds several).
    #[arg(long)]
    flow: Option<String>,
    /// Write the flow's bytes to this file (never replacing an existing one) instead of stdout.
    #[arg(short, long, conflicts_with = "bundle_dir")]
    output: Option<PathBuf>,
    /// Fetch a bundle flow's tree into this directory (new, empty, or a tree an earlier fetch
    /// made, which is replaced atomically). Blobs come from the local blob cache
    /// ($FLOWSTORE_BLOB_CACHE, else ~/.cache/flowstore/blobs) where they are, and every one is
    /// verified.
    #[arg(long, value_name = "DIR")]
    bundle_dir: Option<PathBuf>,
}

/// Runs the command.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let reference = backends::read_reference(&args.reference)?;
    let name = match args.flow {
        Some(n) => n,
        None => match reference.flows.keys().collect::<Vec<_>>().as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(flowstore::Error::invalid_reference(format!(
                    "{} holds no flows; register a flow first",
                    args.reference
                ))
                .into())
            }
            many => bail!(
                "the reference {} holds {} flows ({}); choose one with --flow",
                args.reference,
                many.len(),
                many.iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let registry = backends::registry()?;
    let storage = registry.open(&reference).with_context(|| {
        format!(
            "opening the {} storage of {}",
            reference.type_name, args.reference
        )
    })?;
    if let Some(dir) = &args.bundle_dir {
        return fetch_bundle(&*storage, &name, dir, out).await;
    }
    let spinner = out.spinner(&format!(
        "Fetching flow \"{name}\" from {} storage",
        storage.type_name()
    ));
    let fetched = match &args.output {
        Some(path) => storage.get_flow_to_file(&name, path).await,
        None => storage.get_flow(&name).await,
    }
    .with_context(|| format!("fetching flow \"{name}\""))?;
    spinner.finish_and_clear();

    let envelope = matches!(
        fetched.content,
        FlowContent::Serialized(_)
            | FlowContent::File {
                header: Some(_),
                ..
            }
    );
    let verified = match (envelope, reference.flow_digests.contains_key(&name)) {
        (true, true) => "envelope and registration digest verified",
        (true, false) => "envelope digest verified",
        (false, true) => "registration digest verified",
        (false, false) => "no digest recorded",
    };
    if out.json() {
        out.json_value(&serde_json::json!({
            "flow": fetched.name,
            "form": fetched.form(),
            "location": fetched.location,
            "revision": fetched.revision,
            "size": fetched.size(),
            "verified": verified,
            "output": args.output,
        }));
    } else {
        out.status(&format!(
            "Fetched flow \"{}\" ({}, {}) from {}{}: {verified}",
            fetched.name,
            fetched.form(),
            human_size(fetched.size()),
            fetched.location,
            fetched
                .revision
                .as_deref()
                .map(|r| format!(" at {r}"))
                .unwrap_or_default(),
        ));
        if let FlowContent::Bundle(manifest) = &fetched.content {
            out.status(&format!(
                "Note: a bundle of {} files; this is its manifest. Fetch the tree with --bundle-dir DIR.",
                manifest.files().len()
            ));
        }
        if let FlowContent::Prefect1Pickle { versions, .. } = &fetched.content {
            out.status(&format!("Note: {PICKLE_NOTE}"));
            for (k, v) in versions {
                out.status(&format!("  built with {k} {v}"));
            }
        }
        match &args.output {
            Some(path) => out.status(&format!("Written to {}", path.display())),
            None => {
                use std::io::Write;
                std::io::stdout()
                    .lock()
                    .write_all(fetched.bytes())
                    .context("writing the flow to stdout")?;
            }
        }
    }
    Ok(())
}

/// `fetch --bundle-dir`: materializes a bundle flow's tree.
async fn fetch_bundle(
    storage: &dyn flowstore::Storage,
    name: &str,
    dir: &std::path::Path,
    out: &Output,
) -> anyhow::Result<()> {
    let options = flowstore::bundle::FetchOptions {
        progress: Some(crate::output::progress_reporter()),
        ..Default::default()
    };
    let fetched = storage
        .get_bundle(name, dir, &options)
        .await
        .with_context(|| format!("fetching bundle flow \"{name}\" into {}", dir.display()))?;
    let t = fetched.transfer;
    if out.json() {
        out.json_value(&serde_json::json!({
            "flow": fetched.name,
            "form": "bundle",
            "root": fetched.root,
            "entry": fetched.entry,
            "files": fetched.manifest.files().len(),
            "size": fetched.manifest.total_size(),
            "digest": fetched.manifest.digest(),
            "transfer": t,
            "verified": "manifest digest and every file verified",
        }));
    } else {
        out.status(&format!(
            "Fetched bundle flow \"{}\" ({} files, {}) into {}: manifest and every file verified",
            fetched.name,
            fetched.manifest.files().len(),
            human_size(fetched.manifest.total_size()),
            fetched.root.display()
        ));
        out.status(&format!(
            "Downloaded {} blob(s), {}; {} blob(s), {} from the local cache",
            t.objects,
            human_size(t.bytes),
            t.reused_objects,
            human_size(t.reused_bytes)
        ));
        out.data(&fetched.entry.display().to_string());
    }
    Ok(())
}

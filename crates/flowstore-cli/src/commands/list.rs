//! `flowstore list`: stored flows and their versions, newest first.

use anyhow::Context;

use crate::backends;
use crate::output::{human_size, table, Align, Output};

/// Arguments of `flowstore list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The storage to list (default: Local at the default directory).
    #[arg(long)]
    storage: Option<String>,
    /// A storage option, as the URL's query takes it (repeatable): `region=eu-west-1`,
    /// `endpoint_url=http://127.0.0.1:9000`, `label=prod`; an unknown key is refused by name.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = backends::parse_option)]
    options: Vec<(String, String)>,
    /// Only this flow's versions.
    #[arg(long)]
    flow: Option<String>,
}

/// Runs the command.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let storage = backends::open_url(args.storage.as_deref(), None, &args.options)?;
    let versions = storage
        .list_versions(args.flow.as_deref())
        .await
        .with_context(|| format!("listing {} storage", storage.type_name()))?;
    if out.json() {
        out.json_value(&serde_json::to_value(&versions)?);
        return Ok(());
    }
    if versions.is_empty() {
        out.status(&match &args.flow {
            Some(f) => format!("No stored versions of flow \"{f}\"."),
            None => "No stored flows.".to_string(),
        });
        return Ok(());
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.flow.clone().unwrap_or_else(|| format!("({})", v.slug)),
                v.stored_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                v.size.map(human_size).unwrap_or_default(),
                v.location.clone(),
            ]
        })
        .collect();
    out.data(&table(
        &["FLOW", "STORED", "SIZE", "LOCATION"],
        &rows,
        &[Align::Left, Align::Left, Align::Right, Align::Left],
    ));
    Ok(())
}

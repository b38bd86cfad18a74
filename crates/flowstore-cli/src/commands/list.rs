//! `flowstore list`: stored flows and their versions, newest first.

use anyhow::Context;

use crate::backends;
use crate::output::{human_size, Output};

/// Arguments of `flowstore list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The storage to list (default: Local at the default directory).
    #[arg(long)]
    storage: Option<String>,
    /// Only this flow's versions.
    #[arg(long)]
    flow: Option<String>,
}

/// Runs the command.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let storage = backends::open_url(args.storage.as_deref(), None)?;
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
    let rows: Vec<[String; 4]> = versions
        .iter()
        .map(|v| {
            [
                v.flow.clone().unwrap_or_else(|| format!("({})", v.slug)),
                v.stored_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                v.size.map(human_size).unwrap_or_default(),
                v.location.clone(),
            ]
        })
        .collect();
    let header = ["FLOW", "STORED", "SIZE", "LOCATION"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    out.data(&line(header));
    for r in &rows {
        out.data(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    Ok(())
}

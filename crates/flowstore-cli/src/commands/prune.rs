//! `flowstore prune`: plans which stored versions a retention policy lets go (and the bundle
//! blobs that go with them), prints the plan, and deletes only with `--yes`.

use std::time::Duration;

use anyhow::Context;
use flowstore::cache::parse_duration;
use flowstore::prune::{self, BlobSweep, PruneOptions, PrunePlan, PruneReport, RetentionPolicy};

use crate::backends;
use crate::output::{human_size, table, Align, Output};

/// Arguments of `flowstore prune`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("policy").required(true).multiple(true).args(["keep_last", "older_than"])))]
pub struct Args {
    /// The storage to prune (default: Local at the default directory).
    #[arg(long)]
    storage: Option<String>,
    /// A storage option, as the URL's query takes it (repeatable): `region=eu-west-1`,
    /// `endpoint_url=http://127.0.0.1:9000`.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = backends::parse_option)]
    options: Vec<(String, String)>,
    /// Only this flow's versions (bundle blobs are swept storage-wide either way).
    #[arg(long)]
    flow: Option<String>,
    /// Keep the newest N versions of each flow.
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Delete versions stored longer ago than this (90s, 15m, 12h, 30d). With --keep-last, a
    /// version goes only when both rules let it go.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// A storage reference file (repeatable): every version it names stays.
    #[arg(long, value_name = "REF.json")]
    protect: Vec<String>,
    /// Bundle blobs no version names are moved to the trash once older than this, and deleted
    /// from it one grace period later, so registrations in flight keep theirs (default 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Delete. Without it, prune only prints the plan.
    #[arg(long)]
    yes: bool,
}

/// Runs the command.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let storage = backends::open_url(args.storage.as_deref(), None, &args.options)?;
    let mut options = PruneOptions::new(RetentionPolicy {
        keep_last: args.keep_last,
        older_than: args.older_than,
    });
    options.flow = args.flow.clone();
    if let Some(grace) = args.grace {
        options.grace = grace;
        if grace < flowstore::bundle::RECHECK_AFTER {
            out.status(&format!(
                "warning: a grace period under {}m can take blobs from a registration still \
                 uploading when two sweeps run within it; use it only while nothing registers \
                 to this storage",
                flowstore::bundle::RECHECK_AFTER.as_secs() / 60
            ));
        }
    }
    let mut protected_refs = Vec::new();
    if !args.protect.is_empty() {
        let registry = backends::registry()?;
        for path in &args.protect {
            let reference = backends::read_reference(path)?;
            let protected = registry
                .open(&reference)
                .with_context(|| format!("opening the storage of protected reference {path}"))?;
            options.protect(&*protected);
            protected_refs.push((path, protected.version_locations()));
        }
    }
    let spinner = out.spinner("listing stored versions");
    let plan = prune::plan(&*storage, &options)
        .await
        .with_context(|| format!("planning a prune of {} storage", storage.type_name()));
    spinner.finish_and_clear();
    let plan = plan?;
    for (path, locations) in &protected_refs {
        let names_one = locations
            .iter()
            .any(|l| plan.versions.iter().any(|v| &v.version.location == l));
        if !names_one {
            out.status(&format!(
                "warning: {path} names no version listed in this storage; it protects nothing here"
            ));
        }
    }
    if !out.json() {
        print_plan(&plan, out);
    }
    let report = if args.yes {
        let report = prune::execute(
            &*storage,
            &plan,
            &options,
            Some(&crate::output::progress_reporter()),
        )
        .await
        .with_context(|| format!("pruning {} storage", storage.type_name()))?;
        if !out.json() {
            print_report(&report, out);
        }
        Some(report)
    } else {
        if plan.deleting().next().is_some() || has_blob_work(&plan) {
            out.status("Plan only: nothing was deleted. Run again with --yes to carry it out.");
        } else {
            out.status("Nothing to prune.");
        }
        None
    };
    if out.json() {
        out.json_value(&serde_json::json!({
            "plan": plan,
            "deleted": report.is_some(),
            "report": report,
        }));
    }
    Ok(())
}

fn has_blob_work(plan: &PrunePlan) -> bool {
    plan.blobs.as_ref().is_some_and(|b| {
        !(b.to_trash.is_empty() && b.to_delete.is_empty() && b.to_restore.is_empty())
    })
}

fn print_plan(plan: &PrunePlan, out: &Output) {
    if plan.versions.is_empty() {
        out.status("No stored versions.");
    } else {
        let rows: Vec<Vec<String>> = plan
            .versions
            .iter()
            .map(|v| {
                let version = &v.version;
                vec![
                    if v.reason.keeps() { "keep" } else { "delete" }.to_string(),
                    version
                        .flow
                        .clone()
                        .unwrap_or_else(|| format!("({})", version.slug)),
                    version
                        .stored_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default(),
                    version.size.map(human_size).unwrap_or_default(),
                    v.reason.phrase().to_string(),
                    version.location.clone(),
                ]
            })
            .collect();
        out.data(&table(
            &["ACTION", "FLOW", "STORED", "SIZE", "WHY", "LOCATION"],
            &rows,
            &[
                Align::Left,
                Align::Left,
                Align::Left,
                Align::Right,
                Align::Left,
                Align::Left,
            ],
        ));
    }
    let deleting = plan.deleting().count();
    out.status(&format!(
        "{} versions: {} stay, {deleting} go ({} freed).",
        plan.versions.len(),
        plan.versions.len() - deleting,
        human_size(plan.version_bytes())
    ));
    if let Some(blobs) = &plan.blobs {
        out.status(&blob_summary(blobs, plan.grace_secs, "will"));
    }
}

fn blob_summary(b: &BlobSweep, grace_secs: u64, tense: &str) -> String {
    format!(
        "Bundle blobs: {} stored, {} named by the remaining versions; {} no version names \
         {tense} move to the trash ({}), {} younger than the {} grace period stay; {} trashed \
         over a grace period ago {tense} be deleted ({}){}.",
        b.live,
        b.referenced,
        b.to_trash.len(),
        human_size(b.bytes_to_trash()),
        b.young,
        grace(grace_secs),
        b.to_delete.len(),
        human_size(b.bytes_to_delete()),
        if b.to_restore.is_empty() {
            String::new()
        } else {
            format!(
                "; {} trashed blobs a version names {tense} move back",
                b.to_restore.len()
            )
        }
    )
}

fn grace(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 && s > 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn print_report(report: &PruneReport, out: &Output) {
    out.status(&format!(
        "Deleted {} versions ({}).",
        report.versions_deleted,
        human_size(report.version_bytes_freed)
    ));
    if let Some(b) = &report.blobs {
        out.status(&format!(
            "Swept bundle blobs: {} moved to the trash ({}), {} deleted ({}), {} moved back.",
            b.to_trash.len(),
            human_size(b.bytes_to_trash()),
            b.to_delete.len(),
            human_size(b.bytes_to_delete()),
            b.to_restore.len()
        ));
    }
}

//! `flowstore cache status` and `flowstore cache gc`: what the local caches hold, and trimming
//! them (the bundle blob cache: `$FLOWSTORE_BLOB_CACHE`, else `~/.cache/flowstore/blobs`; the git
//! clone cache: `$FLOWSTORE_GIT_CACHE`, else `~/.cache/flowstore/git`).

use flowstore::cache::{parse_age_limit, parse_duration, parse_size_limit, CachePolicy};

use crate::output::Output;

/// Arguments of `flowstore cache`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CacheCommand {
    /// List the cache's entries (least recently used first), their sizes and whether a running
    /// fetch holds them.
    Status,
    /// Remove temporaries of dead processes, entries unused for longer than the maximum age, then
    /// the least recently used until the cache fits the maximum size. Entries in use are kept.
    Gc(GcArgs),
}

#[derive(Debug, clap::Args)]
struct GcArgs {
    /// Maximum size of each cache (e.g. 500M, 2G; `none`). Default:
    /// FLOWSTORE_GIT_CACHE_MAX_SIZE / FLOWSTORE_BLOB_CACHE_MAX_SIZE, else 2G.
    #[arg(long)]
    max_size: Option<String>,
    /// Maximum time since last use (e.g. 12h, 30d; `none`). Default:
    /// FLOWSTORE_GIT_CACHE_MAX_AGE / FLOWSTORE_BLOB_CACHE_MAX_AGE, else 30d.
    #[arg(long)]
    max_age: Option<String>,
    /// Keep entries used within this time even over the limits (default 10m; 0 to trim all).
    #[arg(long)]
    keep_recent: Option<String>,
}

impl GcArgs {
    /// `policy` with the bounds given on the command line.
    ///
    /// Errors: a bound that does not parse, naming its flag.
    fn apply(&self, mut policy: CachePolicy) -> Result<CachePolicy, flowstore::Error> {
        let option = |flag: &str, e: String| flowstore::Error::config(format!("{flag}: {e}"));
        if let Some(v) = &self.max_size {
            policy.max_size = parse_size_limit(v).map_err(|e| option("--max-size", e))?;
        }
        if let Some(v) = &self.max_age {
            policy.max_age = parse_age_limit(v).map_err(|e| option("--max-age", e))?;
        }
        if let Some(v) = &self.keep_recent {
            policy.keep_recent = parse_duration(v).map_err(|e| option("--keep-recent", e))?;
        }
        Ok(policy)
    }
}

/// Runs the command: the blob cache first, then (with the `git` feature) the git cache. With
/// `--json`, one object: the git cache's fields plus `blob_cache`.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let blob_json = blobs::run(&args.command, out)?;
    #[cfg(feature = "git")]
    {
        git::run(args.command, out, blob_json)
    }
    #[cfg(not(feature = "git"))]
    {
        if out.json() {
            out.json_value(&serde_json::json!({ "blob_cache": blob_json }));
        }
        Ok(())
    }
}

/// The bundle blob cache.
mod blobs {
    use super::*;
    use crate::output::human_size;
    use flowstore::bundle::BlobCache;

    /// Shows or trims the blob cache (human output here); returns its JSON description.
    pub(super) fn run(command: &CacheCommand, out: &Output) -> anyhow::Result<serde_json::Value> {
        let cache = BlobCache::from_env()?;
        let (blobs, bytes) = cache.usage();
        match command {
            CacheCommand::Status => {
                if out.json() {
                    return Ok(serde_json::json!({
                        "dir": cache.root(),
                        "blobs": blobs,
                        "total_size": bytes,
                        "max_size": cache.policy().max_size,
                    }));
                } else {
                    let limit = cache
                        .policy()
                        .max_size
                        .map_or("no limit".into(), human_size);
                    out.status(&format!(
                        "Blob cache {}: {blobs} blob(s), {} (limit {limit})",
                        cache.root().display(),
                        human_size(bytes)
                    ));
                }
            }
            CacheCommand::Gc(args) => {
                let policy = args.apply(cache.policy().clone())?;
                let dir = cache.root().to_path_buf();
                let (evicted, freed) = cache.with_policy(policy).evict(&[]);
                if out.json() {
                    return Ok(serde_json::json!({
                        "dir": dir,
                        "blobs_evicted": evicted,
                        "bytes_freed": freed,
                    }));
                } else {
                    out.status(&format!(
                        "Blob cache: removed {evicted} blob(s), freed {}; {} blob(s) stay.",
                        human_size(freed),
                        blobs - evicted
                    ));
                }
            }
        }
        Ok(serde_json::Value::Null)
    }
}

#[cfg(feature = "git")]
mod git {
    use super::*;
    use crate::output::{human_size, table, Align};
    use flowstore::backends::git::git::GitCache;

    pub(super) fn run(
        command: CacheCommand,
        out: &Output,
        blob_cache: serde_json::Value,
    ) -> anyhow::Result<()> {
        let cache = GitCache::from_env()?;
        match command {
            CacheCommand::Status => status(&cache, out, blob_cache),
            CacheCommand::Gc(args) => gc(cache, args, out, blob_cache),
        }
    }

    fn status(cache: &GitCache, out: &Output, blob_cache: serde_json::Value) -> anyhow::Result<()> {
        let entries = cache.status()?;
        if out.json() {
            out.json_value(&serde_json::json!({
                "blob_cache": blob_cache,
                "dir": cache.dir(),
                "total_size": entries.iter().map(|e| e.entry.size).sum::<u64>(),
                "max_size": cache.policy().max_size,
                "max_age_seconds": cache.policy().max_age.map(|d| d.as_secs()),
                "entries": entries,
            }));
            return Ok(());
        }
        let total: u64 = entries.iter().map(|e| e.entry.size).sum();
        let limit = cache
            .policy()
            .max_size
            .map_or("no limit".into(), human_size);
        out.status(&format!(
            "Git cache {}: {}, {} (limit {limit})",
            cache.dir().display(),
            count(entries.len(), "entry", "entries"),
            human_size(total)
        ));
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                let used = chrono::DateTime::<chrono::Utc>::from(e.entry.last_used);
                vec![
                    e.kind.to_string(),
                    human_size(e.entry.size),
                    used.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    if e.entry.in_use { "yes" } else { "" }.to_string(),
                    e.commit
                        .as_deref()
                        .map_or("", |c| &c[..c.len().min(12)])
                        .to_string(),
                    e.remote.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.data(&table(
            &["KIND", "SIZE", "LAST USED", "IN USE", "COMMIT", "REMOTE"],
            &rows,
            &[
                Align::Left,
                Align::Right,
                Align::Left,
                Align::Left,
                Align::Left,
                Align::Left,
            ],
        ));
        Ok(())
    }

    fn gc(
        cache: GitCache,
        args: GcArgs,
        out: &Output,
        blob_cache: serde_json::Value,
    ) -> anyhow::Result<()> {
        let policy = args.apply(cache.policy().clone())?;
        let report = cache.with_policy(policy).gc()?;
        if out.json() {
            let mut value = serde_json::to_value(&report)?;
            value["blob_cache"] = blob_cache;
            out.json_value(&value);
            return Ok(());
        }
        out.status(&format!(
            "Removed {} and {}, freed {}; {} stay ({}){}.",
            count(report.evicted.len(), "entry", "entries"),
            count(
                report.temporaries_removed,
                "abandoned temporary",
                "abandoned temporaries"
            ),
            human_size(report.bytes_freed),
            count(report.kept.len(), "entry", "entries"),
            human_size(report.kept.iter().map(|e| e.size).sum()),
            if report.skipped_in_use.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} kept because in use or used recently",
                    count(report.skipped_in_use.len(), "entry", "entries")
                )
            }
        ));
        Ok(())
    }

    fn count(n: usize, one: &str, many: &str) -> String {
        format!("{n} {}", if n == 1 { one } else { many })
    }
}

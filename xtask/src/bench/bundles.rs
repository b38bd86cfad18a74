//! Section 7: bundles in S3 on two servers (moto, and s3s-fs, which serves requests in parallel
//! in well under a millisecond): first registration, a one-file-change re-registration, cold and
//! warm fetches, against one archive of the tree and naive per-file transfers on the same server.

use anyhow::Result;

use super::{field as f, num, ratio, Bench, Table};

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

/// Runs the bundle driver against a fresh moto and a fresh s3s-fs and tabulates both.
pub fn run(b: &Bench) -> Result<Table> {
    let moto = on_server(b, "moto", crate::servers::moto::start)?;
    let s3s = on_server(b, "s3s-fs", crate::servers::s3s_fs::start)?;
    let mut table = table(&moto, "moto");
    let fast = table_rows(&s3s, "s3s-fs");
    table.rows.extend(fast);
    table.title = format!(
        "7. Bundles (S3 on moto and on s3s-fs): a {}-file, {} project",
        num(f(&moto, "files")),
        mib(f(&moto, "total_bytes"))
    );
    Ok(table)
}

/// Runs the driver against one freshly started server.
fn on_server(
    b: &Bench,
    name: &str,
    start: fn(&mut crate::servers::Servers) -> Result<()>,
) -> Result<serde_json::Value> {
    let p = &b.params;
    let (mut servers, endpoint, floor_endpoint) =
        super::start_s3(b, &format!("bundles-{name}"), start)?;
    let args = vec![
        endpoint,
        "flowstore-test".to_string(),
        p.bundle_files.to_string(),
        p.bundle_mib.to_string(),
        p.reps.to_string(),
        b.scratch.join("bundles").display().to_string(),
        floor_endpoint,
    ];
    let v = b.run_example("flowstore-cloud", "bench_bundle", &args, &[]);
    servers.stop_all();
    v
}

fn table(v: &serde_json::Value, server: &str) -> Table {
    Table {
        after: String::new(),
        title: String::new(),
        note: format!(
            "flowstore: `FlowInput::bundle` (walk, SHA-256 of every file, small files grouped by path into packs of \
             about 32, the packs and large files the bucket lacks uploaded create-only 16 at a time, then the \
             manifest) and `get_bundle` (manifest verified; files missing from an empty or warm blob cache \
             downloaded 16 requests at a time, a whole pack when half of it or more is needed, else byte ranges; \
             every file verified by its own digest; tree hard-linked into a temporary directory and renamed into \
             place). \"moved\" counts requests that carried data and their bytes. The second registration follows a one-line change to one file ({} B); the warm \
             fetch is of that second version into the cache the cold fetch of the first filled. Floors on the same \
             server, plain unsigned HTTP: one archive of the whole tree (the files concatenated: one PUT; one GET, \
             split back into files) and naive per-file PUTs and GETs one at a time. Goals: the re-registration moves \
             at most 2 objects; the warm fetch only the changed bytes; the cold fetch at most 1.5× the archive floor. \
             moto answers one request at a time and spends a few milliseconds on each (the naive per-file floor \
             divided by the file count is that cost); s3s-fs (Rust, on a local directory) answers in parallel.",
            num(f(v, "changed_file_bytes"))
        ),
        header: ["server", "operation", "flowstore", "moved", "archive floor", "naive per-file floor", "vs archive"]
            .map(String::from)
            .to_vec(),
        rows: table_rows(v, server),
    }
}

fn table_rows(v: &serde_json::Value, server: &str) -> Vec<Vec<String>> {
    let tr = |phase: &str, key: &str| v["transfers"][phase][key].as_f64().unwrap_or(f64::NAN);
    let ms = |x: f64| format!("{x:.0} ms");
    let moved = |phase: &str| {
        format!(
            "{:.0} objects, {}",
            tr(phase, "objects"),
            mib(tr(phase, "bytes"))
        )
    };
    let total = f(v, "total_bytes");
    let tar_total = f(v, "tar_put_ms") + f(v, "tar_get_ms");
    let row = |op: &str, key: &str, phase: &str, floor: &str, naive: &str| {
        vec![
            server.to_string(),
            op.to_string(),
            ms(f(v, key)),
            moved(phase),
            ms(f(v, floor)),
            ms(f(v, naive)),
            ratio(f(v, key), f(v, floor)),
        ]
    };
    vec![
        row(
            "first register",
            "first_register_ms",
            "first_register",
            "tar_put_ms",
            "naive_put_ms",
        ),
        row(
            "register after a one-file change",
            "second_register_ms",
            "second_register",
            "tar_put_ms",
            "naive_put_ms",
        ),
        row(
            "cold fetch",
            "cold_fetch_ms",
            "cold_fetch",
            "tar_get_ms",
            "naive_get_ms",
        ),
        row(
            "warm fetch of the changed version",
            "warm_fetch_ms",
            "warm_fetch",
            "tar_get_ms",
            "naive_get_ms",
        ),
        vec![
            server.to_string(),
            "archive round trip (put + get)".into(),
            "-".into(),
            format!("2 objects, {} each way", mib(total)),
            ms(tar_total),
            "-".into(),
            "-".into(),
        ],
    ]
}

//! Section 7: bundles in S3 (moto): first registration, a one-file-change re-registration, cold
//! and warm fetches, against one archive of the tree and naive per-file transfers on the same
//! server.

use anyhow::Result;

use super::{num, ratio, Bench, Table};

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

/// Runs the bundle driver against a fresh moto and tabulates it.
pub fn run(b: &Bench) -> Result<Table> {
    let p = &b.params;
    let mut servers = crate::servers::Servers::new(&b.scratch.join("servers-bundles"))?;
    crate::servers::moto::start(&mut servers)?;
    let endpoint = servers.env()["FLOWSTORE_TEST_S3_ENDPOINT"].clone();
    let args = vec![
        endpoint,
        "flowstore-test".to_string(),
        p.bundle_files.to_string(),
        p.bundle_mib.to_string(),
        p.reps.min(3).to_string(),
        b.scratch.join("bundles").display().to_string(),
    ];
    let v = b.run_example("flowstore-cloud", "bench_bundle", &args, &[]);
    servers.stop_all();
    let v = v?;
    let tr = |phase: &str, key: &str| v["transfers"][phase][key].as_f64().unwrap_or(f64::NAN);
    let ms = |x: f64| format!("{x:.0} ms");
    let moved = |phase: &str| {
        format!(
            "{} objects, {}",
            num(tr(phase, "objects")),
            mib(tr(phase, "bytes"))
        )
    };
    let files = f(&v, "files");
    let total = f(&v, "total_bytes");
    let tar_total = f(&v, "tar_put_ms") + f(&v, "tar_get_ms");
    Ok(Table {
        title: format!(
            "7. Bundles (S3 on moto): a {}-file, {} project",
            num(files),
            mib(total)
        ),
        note: format!(
            "flowstore: `FlowInput::bundle` (walk, SHA-256 of every file, blobs the bucket lacks uploaded create-only \
             16 at a time, then the manifest) and `get_bundle` (manifest verified, missing blobs downloaded 16 at a \
             time into an empty or warm blob cache, every blob verified, tree hard-linked into a temporary directory \
             and renamed into place). The second registration follows a one-line change to one file ({} B); the warm \
             fetch is of that second version into the cache the cold fetch of the first filled. Floors on the same \
             server, plain unsigned HTTP: one archive of the whole tree (the files concatenated: one PUT; one GET, \
             split back into files) and naive per-file PUTs and GETs one at a time. Goals: the re-registration moves \
             at most 2 objects; the warm fetch only the changed bytes; the cold fetch at most 1.5× the archive floor.",
            num(f(&v, "changed_file_bytes"))
        ),
        header: ["operation", "flowstore", "moved", "archive floor", "naive per-file floor", "vs archive"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            vec![
                "first register".into(),
                ms(f(&v, "first_register_ms")),
                moved("first_register"),
                ms(f(&v, "tar_put_ms")),
                ms(f(&v, "naive_put_ms")),
                ratio(f(&v, "first_register_ms"), f(&v, "tar_put_ms")),
            ],
            vec![
                "register after a one-file change".into(),
                ms(f(&v, "second_register_ms")),
                moved("second_register"),
                ms(f(&v, "tar_put_ms")),
                ms(f(&v, "naive_put_ms")),
                ratio(f(&v, "second_register_ms"), f(&v, "tar_put_ms")),
            ],
            vec![
                "cold fetch".into(),
                ms(f(&v, "cold_fetch_ms")),
                moved("cold_fetch"),
                ms(f(&v, "tar_get_ms")),
                ms(f(&v, "naive_get_ms")),
                ratio(f(&v, "cold_fetch_ms"), f(&v, "tar_get_ms")),
            ],
            vec![
                "warm fetch of the changed version".into(),
                ms(f(&v, "warm_fetch_ms")),
                moved("warm_fetch"),
                ms(f(&v, "tar_get_ms")),
                ms(f(&v, "naive_get_ms")),
                ratio(f(&v, "warm_fetch_ms"), f(&v, "tar_get_ms")),
            ],
            vec![
                "archive round trip (put + get)".into(),
                "-".into(),
                format!("2 objects, {} each way", mib(total)),
                ms(tar_total),
                "-".into(),
                "-".into(),
            ],
        ],
    })
}

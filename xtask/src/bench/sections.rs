//! The timed sections: each runs flowstore's driver and the baselines side by side.

use anyhow::Result;

use super::{num, prefect, ratio, Bench, Table};

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// Section 1: Local storage, N small serialized flows, register then fetch, in-process.
pub fn local(b: &Bench) -> Result<Table> {
    let p = &b.params;
    let args = |durable: bool| {
        vec![
            p.local_flows.to_string(),
            p.small_size.to_string(),
            p.reps.to_string(),
            durable.to_string(),
            b.scratch.join("local").display().to_string(),
        ]
    };
    let durable = b.run_example("flowstore-local", "bench_local", &args(true), &[])?;
    let fast = b.run_example("flowstore-local", "bench_local", &args(false), &[])?;
    let pf = prefect::run_script(
        b,
        "prefect_local.py",
        &[
            p.local_flows.to_string(),
            p.small_size.to_string(),
            p.reps.to_string(),
        ],
        &[],
    )?;
    let (pr, pf_fetch) = (f(&pf, "register_per_s"), f(&pf, "fetch_per_s"));
    let row = |name: &str, v: &serde_json::Value| {
        vec![
            name.to_string(),
            num(f(v, "register_per_s")),
            num(f(v, "fetch_per_s")),
            ratio(f(v, "register_per_s"), pr),
            ratio(f(v, "fetch_per_s"), pf_fetch),
        ]
    };
    Ok(Table {
        title: format!("1. Local storage: {} serialized flows of {} B", p.local_flows, p.small_size),
        note: format!(
            "In-process, interpreter start-up excluded. flowstore seals each flow in a SHA-256 envelope, writes it \
             create-only (temp file + hard link) and verifies two digests on fetch; \"durable\" also fsyncs every \
             flow and its directory. Prefect 1.4.1 `Local` pickles with cloudpickle and writes without fsync \
             (its stored flow was {} B). Flows per second; ratios are flowstore ÷ Prefect.",
            pf["stored_bytes"]
        ),
        header: ["system", "register/s", "fetch/s", "register vs Prefect", "fetch vs Prefect"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            row("flowstore (durable, default)", &durable),
            row("flowstore (no fsync)", &fast),
            vec!["Prefect 1.4.1 Local".into(), num(pr), num(pf_fetch), "1.0×".into(), "1.0×".into()],
        ],
    })
}

/// Placeholder note for the server-backed sections until their drivers exist.
pub fn servers_note(_b: &Bench) -> Result<Table> {
    anyhow::bail!(
        "S3, Git and Docker sections need their backends' bench drivers, which are not written yet"
    )
}

//! `flowstore register`: store a flow and print its storage reference.

use std::path::PathBuf;

use anyhow::Context;
use flowstore::envelope::{seal_file, AppInfo};
use flowstore::FlowInput;

use crate::backends;
use crate::output::{human_size, Output};

/// Arguments of `flowstore register`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The flow file. Serialized mode stores its bytes in a digest-checked envelope; with
    /// `--script` the storage records (or uploads) the script instead. Not with `--bundle`.
    #[arg(required_unless_present = "bundle", conflicts_with = "bundle")]
    file: Option<String>,
    /// Register a bundle: this directory (its `.gitignore`d and `.flowstoreignore`d files left
    /// out) as content-addressed blobs plus a manifest; only blobs the storage lacks are uploaded.
    /// For Git storage, a directory of the repository.
    #[arg(
        long,
        value_name = "DIR",
        requires = "entry",
        conflicts_with = "script"
    )]
    bundle: Option<PathBuf>,
    /// The bundle's entry file, relative to `--bundle` (`flows/etl.py`).
    #[arg(long, value_name = "PATH", requires = "bundle")]
    entry: Option<String>,
    /// The flow's name.
    #[arg(long)]
    name: String,
    /// Store the flow as a script, read again at each run.
    #[arg(long)]
    script: bool,
    /// Where to store it: file:///dir, s3://bucket/prefix, az://container/prefix,
    /// gs://bucket/prefix, git+https://host/org/repo.git#branch=main,
    /// docker://registry:5000/name?mode=daemonless&base_image=…, … (default: Local at
    /// $FLOWSTORE_HOME/flows or ~/.flowstore/flows).
    #[arg(long)]
    storage: Option<String>,
    /// A storage option, as the URL's query takes it (repeatable): `region=eu-west-1`,
    /// `endpoint_url=http://127.0.0.1:9000`, `label=prod`; an unknown key is refused by name.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = backends::parse_option)]
    options: Vec<(String, String)>,
    /// A label agents must carry to run the flow (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Do not add the backend's default labels (Local: the hostname).
    #[arg(long)]
    no_default_labels: bool,
    /// Also write the reference to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the command.
pub async fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let file = args.file.clone().unwrap_or_default();
    let mut storage = backends::open_url(
        args.storage.as_deref(),
        args.script.then_some(file.as_str()),
        &args.options,
    )?;
    let mut labels = storage.index().labels.clone();
    for l in args.labels {
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let add_defaults = storage.index().add_default_labels && !args.no_default_labels;
    storage.set_labels(labels, add_defaults);
    let (input, size) = if let (Some(dir), Some(entry)) = (&args.bundle, &args.entry) {
        let mut input = flowstore::bundle::BundleInput {
            name: args.name.clone(),
            dir: dir.clone(),
            entry: entry.clone(),
            progress: None,
        };
        input.progress = Some(crate::output::progress_reporter());
        (FlowInput::Bundle(input), None)
    } else if args.script {
        (FlowInput::script(&args.name), None)
    } else {
        let app = AppInfo::new("flowstore-cli", env!("CARGO_PKG_VERSION"));
        // A small file is read into the envelope; a large one stays in its file and is streamed
        // to the storage (constant memory).
        let sealed = seal_file(&args.name, std::path::Path::new(&file), &app)
            .with_context(|| format!("reading flow file {file}"))?;
        let size = Some(sealed.payload_len());
        (sealed.into(), size)
    };

    let bundle = matches!(input, FlowInput::Bundle(_));
    let spinner = out.spinner(&format!(
        "Storing {}flow \"{}\" in {} storage",
        if bundle { "bundle " } else { "" },
        args.name,
        storage.type_name()
    ));
    let location = storage
        .add_flow(input)
        .await
        .with_context(|| format!("adding flow \"{}\"", args.name))?;
    storage
        .persist()
        .await
        .with_context(|| format!("persisting the flow in {} storage", storage.type_name()))?;
    spinner.finish_and_clear();

    let reference = storage.reference()?;
    let json = reference.to_json_pretty();
    let transfer = storage.transfer_report(&args.name);
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing the reference to {}", path.display()))?;
    }

    if out.json() {
        out.json_value(&serde_json::json!({
            "flow": args.name,
            "location": location,
            "digest": reference.flow_digests.get(&args.name),
            "form": if bundle { "bundle" } else if args.script { "script" } else { "serialized" },
            "transfer": transfer,
            "reference": reference,
        }));
    } else {
        let what = match (size, bundle) {
            (_, true) => "bundle".to_string(),
            (Some(n), _) => format!("serialized, {}", human_size(n)),
            (None, _) => "script".to_string(),
        };
        out.status(&format!(
            "Registered flow \"{}\" ({what}) in {} storage at {location}",
            args.name,
            storage.type_name()
        ));
        if let Some(d) = reference.flow_digests.get(&args.name) {
            out.status(&format!("Digest: {d}"));
        }
        if let Some(t) = transfer {
            out.status(&format!(
                "Uploaded {} object(s), {} (blobs and manifest); {} blob(s), {} already stored",
                t.objects,
                human_size(t.bytes),
                t.reused_objects,
                human_size(t.reused_bytes)
            ));
        }
        if let Some(path) = &args.out {
            out.status(&format!("Reference written to {}", path.display()));
        }
        out.data(&json);
    }
    Ok(())
}

//! `Module` storage: flows compiled into the running binary, found by module path and name.
//!
//! A program publishes its flows under a module path (e.g. `"my_crate::flows"`) with
//! [`register_flow`]; a `Module` storage records that path as each flow's location, and
//! `get_flow` finds the flow there by name. `module:attr` selects one flow by the identifier it
//! was published under. Flows handed to `add_flow` in serialized form are published into this
//! process's module table too (the in-process equivalent of "importable").

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use flowstore_core::async_trait;
use flowstore_core::raw::config::{self, BackendConfig};
use flowstore_core::raw::FlowIndex;
use flowstore_core::{
    envelope::{seal, AppInfo, SealedFlow},
    key, Error, FetchedFlow, FlowInput, OpenContext, Result, Storage, StorageReference,
};
use serde::{Deserialize, Serialize};

use crate::error::Error as LocalError;

/// The reference type name.
pub const TYPE_NAME: &str = "Module";

/// One flow published under a module path.
#[derive(Debug, Clone)]
struct ModuleFlow {
    attr: String,
    sealed: SealedFlow,
}

fn table() -> &'static Mutex<BTreeMap<String, Vec<ModuleFlow>>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, Vec<ModuleFlow>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn lock_table() -> std::sync::MutexGuard<'static, BTreeMap<String, Vec<ModuleFlow>>> {
    table()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Publishes a flow value under `module` as `attr` (like a Python module attribute).
///
/// Errors with [`Error::Config`] if the value cannot be serialized or `module`/`attr` is empty or
/// contains `:`.
///
/// ```
/// flowstore_local::module::register_flow(
///     "doc_crate::flows", "etl", "My ETL Flow", &vec!["extract", "load"], &flowstore_core::app_info!(),
/// ).unwrap();
/// ```
pub fn register_flow<T: Serialize + ?Sized>(
    module: &str,
    attr: &str,
    name: &str,
    value: &T,
    app: &AppInfo,
) -> Result<()> {
    publish(module, attr, seal(name, value, app)?)
}

/// Splits `module:attr` at a lone `:` (the `::` of a Rust path is not a separator).
fn split_attr(location: &str) -> (&str, Option<&str>) {
    let b = location.as_bytes();
    for i in 0..b.len() {
        let lone =
            b[i] == b':' && (i == 0 || b[i - 1] != b':') && b.get(i + 1).is_none_or(|&n| n != b':');
        if lone {
            return (&location[..i], Some(&location[i + 1..]));
        }
    }
    (location, None)
}

fn publish(module: &str, attr: &str, sealed: SealedFlow) -> Result<()> {
    if module.is_empty() || split_attr(module).1.is_some() {
        return Err(Error::config(format!(
            "Module path {module:?} must be non-empty and must not contain a lone ':'"
        )));
    }
    if attr.is_empty() || attr.contains(':') {
        return Err(Error::config(format!(
            "Module attribute {attr:?} must be non-empty and must not contain ':'"
        )));
    }
    // A module holds its flows in this process's memory: one sealed from a large file is read
    // in now (and checked against its sealed digest as it is).
    let sealed = match sealed.as_bytes() {
        Some(_) => sealed,
        None => {
            let bytes = sealed.to_bytes().map_err(|e| {
                Error::io(
                    format!("Flow \"{}\": reading it into module {module}", sealed.name),
                    e,
                )
            })?;
            SealedFlow::from_envelope(sealed.name, bytes)
        }
    };
    let mut table = lock_table();
    let flows = table.entry(module.to_string()).or_default();
    flows.retain(|f| f.attr != attr);
    flows.push(ModuleFlow {
        attr: attr.to_string(),
        sealed,
    });
    Ok(())
}

/// Replaces the bytes published under `module:attr` (for tests that tamper with a flow).
#[doc(hidden)]
pub fn replace_published_bytes(module: &str, attr: &str, bytes: bytes::Bytes) -> bool {
    let mut table = lock_table();
    match table
        .get_mut(module)
        .and_then(|flows| flows.iter_mut().find(|f| f.attr == attr))
    {
        Some(f) => {
            f.sealed = SealedFlow::from_envelope(f.sealed.name.clone(), bytes);
            true
        }
        None => false,
    }
}

/// Finds the flow `flow_name` at `location` (`module` or `module:attr`), with the reference
/// system's errors.
fn find(location: &str, flow_name: &str) -> std::result::Result<SealedFlow, LocalError> {
    let (module, attr) = split_attr(location);
    let table = lock_table();
    let Some(flows) = table.get(module) else {
        let known: Vec<&String> = table.keys().collect();
        return Err(LocalError::ModuleNotFound {
            what: "module",
            location: location.to_string(),
            message: format!(
                "Failed to find flow at {location}: no module \"{module}\" is registered in this program \
                 (registered modules: {known:?}); publish it with flowstore_local::module::register_flow"
            ),
        });
    };
    if let Some(attr) = attr {
        let found = flows
            .iter()
            .find(|f| f.attr == attr)
            .ok_or_else(|| LocalError::ModuleNotFound {
                what: "flow",
                location: location.to_string(),
                message: format!(
                    "Failed to find flow at {location}: module {module} publishes no attribute \"{attr}\"; \
                     publish it with flowstore_local::module::register_flow, or register the flow again"
                ),
            })?;
        if found.sealed.name != flow_name {
            return Err(LocalError::Module(format!(
                "Flow at {location} is named {}, expected {flow_name}",
                found.sealed.name
            )));
        }
        return Ok(found.sealed.clone());
    }
    if flows.is_empty() {
        return Err(LocalError::ModuleNotFound {
            what: "flow",
            location: location.to_string(),
            message: format!("No flows found in {location}"),
        });
    }
    let matching: Vec<&ModuleFlow> = flows
        .iter()
        .filter(|f| f.sealed.name == flow_name)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.sealed.clone()),
        [] => Err(LocalError::ModuleNotFound {
            what: "flow",
            location: location.to_string(),
            message: format!(
                "Failed to find flow \"{flow_name}\" in {location}. Found flows: {}",
                flows
                    .iter()
                    .map(|f| f.sealed.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
        _ => Err(LocalError::Module(format!(
            "Multiple flows found in {location}, please provide flow_name to select one. \
             ({} flows are named \"{flow_name}\": select one with {location}:<attr>, attrs: {})",
            matching.len(),
            matching
                .iter()
                .map(|f| f.attr.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The backend fields of a `Module` reference: the whole configuration of a [`Module`] storage.
///
/// Option keys ([`ModuleBuilder::with_config`]): `module`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleConfig {
    /// The module path (`my_crate::flows`, optionally `my_crate::flows:attr`).
    pub module: String,
}

impl BackendConfig for ModuleConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = &[("module", "module")];
}

/// Makes a [`Module`] storage: [`Module::builder`], then setters, then [`ModuleBuilder::build`].
///
/// ```
/// use flowstore_local::Module;
/// let storage = Module::builder("my_crate::flows").label("prod").build()?;
/// assert_eq!(storage.config().module, "my_crate::flows");
/// assert!(Module::builder("").build().is_err());
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ModuleBuilder {
    config: ModuleConfig,
    index: FlowIndex,
}

impl ModuleBuilder {
    /// A builder for flows published under `module` (see [`register_flow`]).
    pub fn new(module: impl Into<String>) -> Self {
        ModuleBuilder {
            config: ModuleConfig {
                module: module.into(),
            },
            index: FlowIndex::default(),
        }
    }

    flowstore_core::builder_common_methods!(index);

    /// Sets one option by key: `module`, and the options every storage takes (`label`,
    /// `add_default_labels`, `secret`).
    ///
    /// Errors with [`Error::Config`] for an unknown key (naming it and the known ones).
    pub fn with_config(self, key: &str, value: &str) -> Result<Self> {
        self.with_configs([(key, value)])
    }

    /// Sets options in order (see [`ModuleBuilder::with_config`]).
    ///
    /// Errors as [`ModuleBuilder::with_config`] does, at the first pair that fails.
    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        config::apply_pairs(&mut self.config, &mut self.index, pairs)?;
        Ok(self)
    }

    /// The configuration so far.
    pub fn config(&self) -> &ModuleConfig {
        &self.config
    }

    /// Builds the storage (nothing is looked up until a flow is fetched).
    ///
    /// Errors with [`Error::Config`] for an empty module path.
    pub fn build(self) -> Result<Module> {
        if self.config.module.trim().is_empty() {
            return Err(Error::config(
                "Module storage needs a module path (e.g. \"my_crate::flows\"), the one its flows \
                 are published under with flowstore_local::module::register_flow",
            ));
        }
        Ok(Module {
            config: self.config,
            index: self.index,
        })
    }
}

/// Flows compiled into the running binary (made by [`ModuleBuilder`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> flowstore_core::Result<()> {
/// use flowstore_core::{FlowInput, Storage};
/// use flowstore_local::{module::register_flow, Module};
/// let app = flowstore_core::app_info!();
/// register_flow("doc::flows", "etl", "My ETL Flow", &["extract", "load"], &app)?;
/// let mut storage = Module::builder("doc::flows").build()?;
/// storage.add_flow(FlowInput::script("My ETL Flow")).await?;
/// let tasks: Vec<String> = storage.get_flow("My ETL Flow").await?.decode(&app)?;
/// assert_eq!(tasks, ["extract", "load"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Module {
    config: ModuleConfig,
    index: FlowIndex,
}

impl Module {
    /// A builder for flows published under `module` (see [`ModuleBuilder`]).
    pub fn builder(module: impl Into<String>) -> ModuleBuilder {
        ModuleBuilder::new(module)
    }

    /// The configuration, as [`Storage::reference`] records it.
    pub fn config(&self) -> &ModuleConfig {
        &self.config
    }

    /// Opens a `Module` reference.
    ///
    /// Errors with [`Error::InvalidReference`] without `module`, and [`Error::Config`] for an
    /// empty one.
    pub fn from_reference(reference: &StorageReference, _ctx: &OpenContext) -> Result<Self> {
        ModuleBuilder {
            config: ModuleConfig::from_reference(reference)?,
            index: FlowIndex::from_reference(reference),
        }
        .build()
    }
}

#[async_trait]
impl Storage for Module {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn index(&self) -> &FlowIndex {
        &self.index
    }

    fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.index
    }

    fn capabilities(&self) -> flowstore_core::Capabilities {
        flowstore_core::Capabilities {
            write: true,
            many_flows: true,
            serialized: true,
            script: false,
            list_versions: false,
            stream_to_file: false,
            bundles: false,
            delete_versions: false,
        }
    }

    /// A script-form flow is expected to be compiled in under the module path (location = the
    /// module); a serialized flow is published into this process's module table under a fresh
    /// attribute (location = `module:attr`).
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        self.index.ensure_new(flow.name())?;
        let module = split_attr(&self.config.module).0.to_string();
        match flow {
            FlowInput::Script { name } => {
                self.index.insert(&name, self.config.module.clone(), None)?;
                Ok(self.config.module.clone())
            }
            FlowInput::Serialized(sealed) => {
                let attr = key::new_flow_key(&sealed.name).replace('/', "@");
                let location = format!("{module}:{attr}");
                let digest = sealed.digest();
                let name = sealed.name.clone();
                publish(&module, &attr, sealed)?;
                self.index.insert(&name, location.clone(), Some(digest))?;
                Ok(location)
            }
            FlowInput::Bundle(b) => Err(flowstore_core::bundle::unsupported(TYPE_NAME, &b.name)),
        }
    }

    async fn persist(&mut self) -> Result<()> {
        Ok(())
    }

    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?;
        let sealed = find(location, name)?;
        self.index.open_serialized(
            name,
            location,
            None,
            sealed.to_bytes().map_err(|e| {
                Error::io(format!("Flow \"{name}\": reading it from {location}"), e)
            })?,
        )
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.config)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppInfo {
        AppInfo::new("t", "1")
    }

    #[tokio::test]
    async fn compiled_in_flows_are_found_by_name_with_clear_errors() {
        register_flow("tests::flows", "a", "Flow A", &1, &app()).unwrap();
        register_flow("tests::flows", "b", "Flow B", &2, &app()).unwrap();
        register_flow("tests::dups", "x", "Same", &1, &app()).unwrap();
        register_flow("tests::dups", "y", "Same", &2, &app()).unwrap();

        let mut s = Module::builder("tests::flows").build().unwrap();
        s.add_flow(FlowInput::script("Flow B")).await.unwrap();
        s.add_flow(FlowInput::script("Flow C")).await.unwrap();
        let v: i32 = s.get_flow("Flow B").await.unwrap().decode(&app()).unwrap();
        assert_eq!(v, 2);
        let e = s.get_flow("Flow C").await.unwrap_err().to_string();
        assert!(
            e.contains(
                "Failed to find flow \"Flow C\" in tests::flows. Found flows: Flow A, Flow B"
            ),
            "{e}"
        );

        let mut s = Module::builder("tests::flows:a").build().unwrap();
        s.add_flow(FlowInput::script("Flow B")).await.unwrap();
        let e = s.get_flow("Flow B").await.unwrap_err().to_string();
        assert!(
            e.contains("Flow at tests::flows:a is named Flow A, expected Flow B"),
            "{e}"
        );

        let mut s = Module::builder("tests::flows:zzz").build().unwrap();
        s.add_flow(FlowInput::script("Flow A")).await.unwrap();
        let e = s.get_flow("Flow A").await.unwrap_err().to_string();
        assert!(e.contains("Failed to find flow at tests::flows:zzz"), "{e}");

        let mut s = Module::builder("tests::dups").build().unwrap();
        s.add_flow(FlowInput::script("Same")).await.unwrap();
        let e = s.get_flow("Same").await.unwrap_err().to_string();
        assert!(
            e.contains(
                "Multiple flows found in tests::dups, please provide flow_name to select one."
            ),
            "{e}"
        );

        let mut s = Module::builder("tests::nowhere").build().unwrap();
        s.add_flow(FlowInput::script("X")).await.unwrap();
        let e = s.get_flow("X").await.unwrap_err().to_string();
        assert!(e.contains("Failed to find flow at tests::nowhere"), "{e}");
    }
}

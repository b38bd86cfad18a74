//! Module storage: the conformance suite, run against this process's module table.

use bytes::Bytes;
use flowstore_core::testkit::{Harness, HarnessResult};
use flowstore_core::{Registry, Storage, StorageReference};
use flowstore_local::Module;

struct ModuleHarness;

#[flowstore_core::async_trait]
impl Harness for ModuleHarness {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        Some(Box::new(Module::new("conformance::flows")))
    }

    async fn script_storage(&self, _flow: &str, _source: &[u8]) -> Option<Box<dyn Storage>> {
        // Module flows are compiled in; there is no script file to read.
        None
    }

    fn registry(&self) -> Registry {
        let mut r = Registry::new();
        flowstore_local::register(&mut r);
        r
    }

    async fn tamper(&self, reference: &StorageReference, flow: &str, bytes: Bytes) -> bool {
        let (module, attr) = reference.flows[flow].rsplit_once(':').unwrap();
        flowstore_local::module::replace_published_bytes(module, attr, bytes)
    }
}

async fn harness() -> HarnessResult<ModuleHarness> {
    Ok(ModuleHarness)
}

flowstore_core::conformance_suite!(harness);

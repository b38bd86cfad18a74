//! Module storage: the conformance suite, run against this process's module table.

use bytes::Bytes;
use flowstore_core::testkit::{Harness, HarnessResult};
use flowstore_core::{Registry, Storage, StorageReference};
use flowstore_local::{Module, ModuleBuilder, ModuleConfig};

struct ModuleHarness;

#[flowstore_core::async_trait]
impl Harness for ModuleHarness {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        Some(Box::new(
            Module::builder("conformance::flows").build().unwrap(),
        ))
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

#[test]
fn pairs_typed_and_reference_configs_are_the_same() {
    let typed = Module::builder("app::flows")
        .label("prod")
        .secret("DB")
        .build()
        .unwrap();
    let paired = ModuleBuilder::new("")
        .with_configs([
            ("module", "app::flows"),
            ("label", "prod"),
            ("secret", "DB"),
        ])
        .unwrap()
        .build()
        .unwrap();
    let reopened =
        Module::from_reference(&typed.reference().unwrap(), &Default::default()).unwrap();
    for other in [&paired, &reopened] {
        assert_eq!(typed.config(), other.config());
        assert_eq!(typed.labels(), other.labels());
        assert_eq!(typed.secrets(), other.secrets());
    }
    assert_eq!(
        typed.config(),
        &ModuleConfig {
            module: "app::flows".into()
        }
    );
    let e = Module::builder("app::flows")
        .with_config("modul", "x")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Unknown Module option \"modul\"") && e.contains("module"),
        "{e}"
    );
    let e = Module::builder(" ").build().unwrap_err().to_string();
    assert!(e.contains("needs a module path"), "{e}");
}

#[tokio::test]
async fn lookups_that_find_nothing_are_not_found_and_ambiguous_ones_config() {
    let app = flowstore_core::app_info!();
    flowstore_local::module::register_flow("kinds::flows", "a", "A", &1, &app).unwrap();
    flowstore_local::module::register_flow("kinds::flows", "b", "Twin", &1, &app).unwrap();
    flowstore_local::module::register_flow("kinds::flows", "c", "Twin", &2, &app).unwrap();
    for (module, flow, not_found) in [
        ("kinds::nowhere", "A", true),
        ("kinds::flows", "Missing", true),
        ("kinds::flows:zzz", "A", true),
        ("kinds::flows", "Twin", false),
        ("kinds::flows:a", "Twin", false),
    ] {
        let mut s = Module::builder(module).build().unwrap();
        s.add_flow(flowstore_core::FlowInput::script(flow))
            .await
            .unwrap();
        let err = s.get_flow(flow).await.unwrap_err();
        if not_found {
            assert!(
                matches!(err, flowstore_core::Error::NotFound { .. }),
                "{module} {flow}: {err:?}"
            );
        } else {
            assert!(
                matches!(err, flowstore_core::Error::Config { .. }),
                "{module} {flow}: {err:?}"
            );
        }
    }
}

//! The builder methods every backend shares, so labels and declared secrets are set the same way
//! on every storage.

/// Expands, inside a builder's `impl` block, the methods every flowstore builder has: `label`,
/// `labels`, `add_default_labels` and `secret`. The argument is the path of the builder's
/// [`FlowIndex`](crate::raw::FlowIndex) field (`index`, or `0.index` in a newtype).
///
/// ```
/// use flowstore_core::raw::FlowIndex;
/// #[derive(Default)]
/// pub struct DemoBuilder {
///     index: FlowIndex,
/// }
/// impl DemoBuilder {
///     flowstore_core::builder_common_methods!(index);
/// }
/// let b = DemoBuilder::default().label("prod").labels(["eu", "prod"]).secret("DB");
/// assert_eq!(b.index.labels, ["prod", "eu"]);
/// assert_eq!(b.index.secrets, ["DB"]);
/// assert!(!DemoBuilder::default().add_default_labels(false).index.add_default_labels);
/// ```
#[macro_export]
macro_rules! builder_common_methods {
    ($($index:tt).+) => {
        /// Adds a label agents must carry to run these flows (once, however often it is given;
        /// also `label=` in a URL or `with_config`).
        pub fn label(mut self, label: impl Into<String>) -> Self {
            let label = label.into();
            if !self.$($index).+.labels.contains(&label) {
                self.$($index).+.labels.push(label);
            }
            self
        }

        /// Adds labels (see `label`).
        pub fn labels<L: Into<String>>(self, labels: impl IntoIterator<Item = L>) -> Self {
            labels.into_iter().fold(self, |builder, l| builder.label(l))
        }

        /// Turns the backend's default labels on or off (on by default; Local adds the
        /// hostname, the other backends none; also `add_default_labels=` in a URL).
        pub fn add_default_labels(mut self, on: bool) -> Self {
            self.$($index).+.add_default_labels = on;
            self
        }

        /// Declares a secret an agent must resolve before fetching: its name is recorded in the
        /// reference, never its value (once, however often it is given; also `secret=`).
        pub fn secret(mut self, name: impl Into<String>) -> Self {
            let name = name.into();
            if !self.$($index).+.secrets.contains(&name) {
                self.$($index).+.secrets.push(name);
            }
            self
        }
    };
}

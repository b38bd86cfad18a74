//! Python module paths as script locations: Prefect 1's `Local(path="flows.etl",
//! stored_as_script=True)` records a module path, and its agent, finding no file of that name,
//! imports the module (`importlib.import_module`). This finds the file that import would load.

use std::path::{Path, PathBuf};

/// True for `a.b.c` or `a.b.c:attr` (Python identifiers joined by dots, an optional attribute
/// after one `:`) that is not a file name: no `/` or `\`, not ending in `.py`.
pub(crate) fn is_module_path(location: &str) -> bool {
    let (module, attr) = match location.split_once(':') {
        Some((m, a)) => (m, Some(a)),
        None => (location, None),
    };
    let identifiers = |s: &str| {
        s.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || c == '_')
        })
    };
    !location.ends_with(".py") && identifiers(module) && attr.is_none_or(identifiers)
}

/// Where the module is searched, in order: the working directory, then each `PYTHONPATH` entry
/// (an empty entry is the working directory), as a Prefect 1 local agent's flow run sees
/// `sys.path` (the agent puts its working directory before the inherited `PYTHONPATH`).
pub(crate) fn search_roots() -> Vec<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut roots = vec![cwd.clone()];
    if let Some(pythonpath) = std::env::var_os("PYTHONPATH") {
        for entry in std::env::split_paths(&pythonpath) {
            roots.push(if entry.as_os_str().is_empty() {
                cwd.clone()
            } else {
                cwd.join(entry)
            });
        }
    }
    roots
}

/// What one name is in one search directory.
enum Found {
    /// A regular package: the directory and its `__init__.py`.
    Package(PathBuf, PathBuf),
    /// A module file `name.py`.
    Module(PathBuf),
}

/// The source file Python's import of `location`'s module part would load from `roots`:
/// `a/b/c.py` or `a/b/c/__init__.py`, with `a` and `a/b` regular packages (an `__init__.py`) or
/// namespace packages (directories without one, which may be spread over several roots). In
/// each directory a package comes before a module file of the same name, and the first root
/// that has either wins, as in Python. `None` when the import would fail or load no file (a
/// namespace package).
pub(crate) fn find_module(roots: &[PathBuf], location: &str) -> Option<PathBuf> {
    let module = location.split_once(':').map_or(location, |(m, _)| m);
    let parts: Vec<&str> = module.split('.').collect();
    let mut search: Vec<PathBuf> = roots.to_vec();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut namespace = Vec::new();
        let found = search.iter().find_map(|root| {
            let found = lookup(root, part);
            if found.is_none() && root.join(part).is_dir() {
                namespace.push(root.join(part));
            }
            found
        });
        match found {
            Some(Found::Package(_, init)) if last => return Some(init),
            Some(Found::Package(dir, _)) => search = vec![dir],
            Some(Found::Module(file)) => return last.then_some(file),
            None if !last && !namespace.is_empty() => search = namespace,
            None => return None,
        }
    }
    None
}

fn lookup(root: &Path, name: &str) -> Option<Found> {
    let dir = root.join(name);
    let init = dir.join("__init__.py");
    if init.is_file() {
        return Some(Found::Package(dir, init));
    }
    let file = root.join(format!("{name}.py"));
    file.is_file().then_some(Found::Module(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_are_dotted_identifiers() {
        for yes in ["flows.etl", "etl", "a.b.c:flow", "a:Obj.flow", "_x.y1"] {
            assert!(is_module_path(yes), "{yes}");
        }
        for no in [
            "flows/etl.py",
            "etl.py",
            "/abs/flows.etl",
            "a..b",
            ".a",
            "a.",
            "1a.b",
            "a-b.c",
            "",
            "a:b:c",
            "a:",
        ] {
            assert!(!is_module_path(no), "{no}");
        }
    }

    #[test]
    fn resolves_as_python_imports() {
        let d = tempfile::tempdir().unwrap();
        let (r1, r2) = (d.path().join("r1"), d.path().join("r2"));
        let write = |p: PathBuf| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        };
        // Namespace package `ns` spread over both roots; regular package `pkg` in r2 only.
        write(r1.join("ns/a.py"));
        write(r2.join("ns/b/__init__.py"));
        write(r2.join("pkg/__init__.py"));
        write(r2.join("pkg/mod.py"));
        write(r2.join("pkg/mod/__init__.py")); // a package beats a module of the same name
        write(r1.join("plain.py"));
        write(r2.join("plain/__init__.py")); // the first root that has it wins
        std::fs::create_dir_all(r1.join("pkg")).unwrap(); // a namespace part loses to r2's package
        let roots = [r1.clone(), r2.clone()];
        let find = |m: &str| find_module(&roots, m);
        assert_eq!(find("ns.a"), Some(r1.join("ns/a.py")));
        assert_eq!(find("ns.b:flow"), Some(r2.join("ns/b/__init__.py")));
        assert_eq!(find("pkg.mod"), Some(r2.join("pkg/mod/__init__.py")));
        assert_eq!(find("pkg"), Some(r2.join("pkg/__init__.py")));
        assert_eq!(find("plain"), Some(r1.join("plain.py")));
        assert_eq!(find("plain.x"), None, "a module is not a package");
        assert_eq!(find("ns"), None, "a namespace package has no file");
        assert_eq!(find("missing.x"), None);
    }
}

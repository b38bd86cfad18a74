//! Bundles through real `flowstore` processes on Local storage: many processes fetching into one
//! blob cache at once, and fetches and registrations killed with SIGKILL at random moments. A
//! destination holds the whole tree or nothing; the cache holds only whole, verified blobs; the
//! next fetch completes and sweeps what the killed one left.
//!
//! `FLOWSTORE_STRESS=1` (set by `cargo xtask stress`) raises the trial counts (see `common`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(dead_code)] // the shared module also serves the other reliability tests
mod common;
use common::{kill_window, stress, Jitter, World};

impl World {
    /// `flowstore` with its output on stderr only.
    fn quiet(&self) -> Command {
        let mut c = self.flowstore();
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    /// A project of `files` files of `size` bytes, registered; returns the reference's path.
    fn register(&self, files: usize, size: usize) -> PathBuf {
        let project = self.root.join("project");
        for i in 0..files {
            let p = project.join(format!("pkg{}/file{i}.py", i % 7));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let bytes: Vec<u8> = (0..size)
                .map(|j| b'a' + ((i * 31 + j) % 26) as u8)
                .collect();
            std::fs::write(p, bytes).unwrap();
        }
        std::fs::write(project.join("flow.py"), "import pkg0\n").unwrap();
        let reference = self.root.join("ref.json");
        let out = self
            .quiet()
            .args(["register", "--bundle"])
            .arg(&project)
            .args(["--entry", "flow.py", "--name", "Bundle", "--out"])
            .arg(&reference)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }

    fn fetch(&self, reference: &Path, dest: &Path) -> Command {
        let mut c = self.quiet();
        c.arg("fetch").arg(reference).arg("--bundle-dir").arg(dest);
        c
    }
}

/// Every file of the project, compared with the fetched tree.
fn assert_whole(world: &World, dest: &Path) {
    let project = world.root.join("project");
    let mut count = 0;
    for entry in walk(&project) {
        let rel = entry.strip_prefix(&project).unwrap();
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(dest.join(rel)).unwrap_or_else(|e| panic!("{}: {e}", rel.display())),
            "{}",
            rel.display()
        );
        count += 1;
    }
    assert_eq!(walk(dest).len(), count + 1, "the tree plus its marker file");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every blob in the cache hashes to its name.
fn assert_cache_whole(world: &World) {
    let Ok(entries) = std::fs::read_dir(world.root.join("cache/sha256")) else {
        return;
    };
    for e in entries.flatten() {
        let (digest, _) = flowstore_core::bundle::digest_file(&e.path()).unwrap();
        let name = e
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".x")
            .to_string();
        assert_eq!(
            digest,
            format!("sha256:{name}"),
            "a partial blob in the cache"
        );
    }
}

#[test]
fn eight_processes_fetch_into_one_cache_at_once() {
    let world = World::new();
    let reference = world.register(120, 8 * 1024);
    let children: Vec<_> = (0..8)
        .map(|i| {
            world
                .fetch(&reference, &world.root.join(format!("dest{i}")))
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_whole(&world, &world.root.join(format!("dest{i}")));
    }
    assert_cache_whole(&world);
    // And eight at once into the same directory: each swaps in a whole tree.
    let same = world.root.join("same");
    let children: Vec<_> = (0..8)
        .map(|_| world.fetch(&reference, &same).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_whole(&world, &same);
}

#[test]
fn a_fetch_killed_at_any_moment_leaves_a_whole_tree_or_none() {
    let world = World::new();
    let reference = world.register(300, 16 * 1024);
    let window = kill_window(&mut world.fetch(&reference, &world.root.join("timing")));
    let trials = if stress() { 60 } else { 12 };
    let mut jitter = Jitter(7);
    let (mut killed, mut finished) = (0, 0);
    for trial in 0..trials {
        // A cold cache each time, so the kill can land mid-download as well as mid-materialize.
        let _ = std::fs::remove_dir_all(world.root.join("cache"));
        let dest = world.root.join(format!("killed{trial}"));
        let mut child = world.fetch(&reference, &dest).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(jitter.next(window)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            finished += 1;
            assert_whole(&world, &dest);
        } else {
            killed += 1;
            // Killed before the rename: nothing; after it (before exiting): the whole tree.
            if dest.exists() {
                assert_whole(&world, &dest);
            }
        }
        assert_cache_whole(&world);
        // The next fetch completes and sweeps the killed one's temporaries.
        let out = world.fetch(&reference, &dest).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_whole(&world, &dest);
        let leftovers: Vec<_> = std::fs::read_dir(&world.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(&format!("killed{trial}.flowstore-tmp-")))
            .collect();
        assert!(leftovers.is_empty(), "not swept: {leftovers:?}");
    }
    eprintln!("bundle fetch kills: {killed} killed, {finished} finished of {trials}");
}

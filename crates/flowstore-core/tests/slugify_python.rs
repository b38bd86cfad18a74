//! `key::slugify` against python-slugify itself, the function Prefect 1 makes its storage keys
//! with: every code point (0..=U+10FFFF but the surrogates, which a Rust string cannot hold)
//! alone and inside a word, and a sample of every Unicode block in the contexts the slug steps
//! care about (separators, commas inside numbers, quotes, HTML references, combining marks).
//!
//! The corpus is generated here; a Python with prefect==1.4.1 installed (which brings
//! python-slugify and text-unidecode, as a Prefect 1 deployment has them) slugs it, named by
//! `FLOWSTORE_TEST_PREFECT1_PYTHON` (`cargo xtask test` makes that venv); without it the test
//! skips visibly. Every mismatch is listed: code point, input, python-slugify's slug, ours.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use flowstore_core::key::slugify;
use flowstore_core::testkit::{skip, Skip};
use serde::Deserialize;

const PYTHON_ENV: &str = "FLOWSTORE_TEST_PREFECT1_PYTHON";

/// Runs in the test Python. `info`: what the corpus needs to know about it, as JSON. `slug IN`:
/// python-slugify's default slug of each JSON string line of the file IN, one per line.
const SCRIPT: &str = r#"
import importlib.util, json, sys, unicodedata
unidecode_installed = importlib.util.find_spec('unidecode') is not None
if sys.argv[1] == 'info':
    from html.entities import name2codepoint
    import slugify
    assigned, start = [], None
    for cp in range(0x110000):
        known = unicodedata.category(chr(cp)) not in ('Cn', 'Cs')
        if known and start is None:
            start = cp
        elif not known and start is not None:
            assigned.append([start, cp - 1])
            start = None
    if start is not None:
        assigned.append([start, 0x10FFFF])
    print(json.dumps({
        'python': sys.version.split()[0],
        'slugify': getattr(slugify, '__version__', 'unknown'),
        'unicode': unicodedata.unidata_version,
        'unidecode_installed': unidecode_installed,
        'entities': name2codepoint,
        'assigned': assigned,
    }))
else:
    # Some python-slugify versions look for the optional Unidecode package on every call (a
    # file-system search) before using text-unidecode: record its absence once. Same slugs,
    # several times faster.
    if not unidecode_installed:
        sys.modules['unidecode'] = None
    from slugify import slugify
    out = sys.stdout
    with open(sys.argv[2], encoding='utf-8', newline='\n') as f:
        for line in f:
            out.write(slugify(json.loads(line)) + '\n')
"#;

/// What the test Python reports about itself.
#[derive(Deserialize)]
struct Info {
    python: String,
    slugify: String,
    unicode: String,
    unidecode_installed: bool,
    entities: BTreeMap<String, u32>,
    /// Ranges of the code points its `unicodedata` knows (any category but Cn and Cs).
    assigned: Vec<(u32, u32)>,
}

/// One input: the code point it was made for (if any) and the text.
struct Case {
    cp: Option<u32>,
    input: String,
}

fn python() -> Option<PathBuf> {
    match std::env::var_os(PYTHON_ENV) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            skip(
                "slugify_matches_python_slugify",
                &Skip(format!(
                    "{PYTHON_ENV} is not set: no Python with prefect==1.4.1 to compare with (cargo xtask test makes one)"
                )),
            );
            None
        }
    }
}

fn run_script(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} ({PYTHON_ENV}): {e}", python.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {}",
        python.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python-slugify's slugs are ASCII")
}

/// Contexts every sampled code point `c` is put in: `{c}` is the character, `{dec}` and
/// `{hex}`/`{HEX}` its code point in decimal and hexadecimal.
const SAMPLE_TEMPLATES: &[&str] = &[
    "{c} flow",
    "flow {c}",
    "My{c}ETL {c}{c} e\u{301}{c} {c}\u{301}\u{316}",
    "1{c},000 1,{c} {c},1 {c},{c}",
    "'{c}' C'{c}st {c}'s",
    "&#{dec};",
    "a&#{dec};b 1,&#{dec};,1 &amp;#{dec};",
    "&#x{hex};",
    "&#x{HEX}; &#X{hex}; &#38;#x{hex};",
    // One reference beyond U+10FFFF: Python decodes none of that kind in the text.
    "&#{dec};&#1114112;",
    "&#x{hex};&#x110000;",
    "{c}&amp;{c} &{c}; &#{c};",
];

/// Contexts for every name in Python's `html.entities.name2codepoint`.
const ENTITY_TEMPLATES: &[&str] = &[
    "&{name};",
    "x&{name};y",
    "1&{name};2",
    "&{NAME};",
    "&{name}",
    "&{name};&#65;",
    "&&{name};;",
];

/// References and commas whose handling does not depend on a code point.
const FIXED: &[&str] = &[
    "&#1114111;",
    "&#1114112;",
    "a&#65;b&#1114112;c",
    "&#99999999999999999999999;",
    "&#x10FFFF;",
    "&#x110000;",
    "&#x41;&#x110000;",
    "&#x41;&#1114112;",
    "&#55296;",
    "&#xD800;",
    "&#xdfff;&#x41;",
    "&#0;",
    "&#x0;",
    "&#00065;",
    "&#x0041;",
    "&#;",
    "&#x;",
    "&#65",
    "&&#65;",
    "&#&#65;;",
    "&amp;amp;",
    "&amp;#x41;",
    "&#38;#65;",
    "&#x26;#65;",
    "&#x26;#x41;",
    "1,000",
    "1,,000",
    "1, 000",
    "1,000,000",
    "a,1",
    "1,a",
    "1',000",
    "1\u{2019},000",
    "1\u{201A}000",
    "don\u{2019}t stop",
    "emoji \u{1F680} flow",
    "My ETL Flow",
];

fn expand(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(k, v);
    }
    s
}

/// Whether the test Python's `unicodedata` knows `cp` (it is assigned in its Unicode version).
fn knows(info: &Info, cp: u32) -> bool {
    let i = info.assigned.partition_point(|&(_, end)| end < cp);
    info.assigned.get(i).is_some_and(|&(start, _)| start <= cp)
}

fn corpus(info: &Info) -> Vec<Case> {
    let mut cases = Vec::new();
    // Every code point, alone and inside a word.
    for cp in 0..=0x10FFFFu32 {
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        cases.push(Case {
            cp: Some(cp),
            input: c.to_string(),
        });
        cases.push(Case {
            cp: Some(cp),
            input: format!("a{c}b"),
        });
    }
    // Every block starts and ends on a 16-code-point column: sample every column that holds
    // assigned code points (its first, middle and last), but in the private use areas (all
    // alike) one column in 16, and one unassigned code point per 256.
    let assigned = |cp| knows(info, cp);
    let mut samples = Vec::new();
    for column in (0..=0x10FFFFu32).step_by(16) {
        let known: Vec<u32> = (column..column + 16)
            .filter(|&cp| char::from_u32(cp).is_some() && assigned(cp))
            .collect();
        let private_use = matches!(column, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
        let area_end = matches!(column, 0xF8F0 | 0xFFFF0 | 0x10FFF0);
        if private_use && column % 256 != 0 && !area_end {
            continue;
        }
        if let (Some(&first), Some(&last)) = (known.first(), known.last()) {
            samples.extend([first, known[known.len() / 2], last]);
        }
        if column % 256 == 0 {
            samples.extend(
                (column..column + 256).find(|&cp| char::from_u32(cp).is_some() && !assigned(cp)),
            );
        }
    }
    samples.sort_unstable();
    samples.dedup();
    for cp in samples {
        let c = char::from_u32(cp).expect("surrogates are never sampled");
        let (c, dec, hex, upper) = (
            c.to_string(),
            cp.to_string(),
            format!("{cp:x}"),
            format!("{cp:X}"),
        );
        let vars = [
            ("{c}", &*c),
            ("{dec}", &*dec),
            ("{hex}", &*hex),
            ("{HEX}", &*upper),
        ];
        for t in SAMPLE_TEMPLATES {
            cases.push(Case {
                cp: Some(cp),
                input: expand(t, &vars),
            });
        }
    }
    for name in info.entities.keys() {
        let upper = name.to_uppercase();
        for t in ENTITY_TEMPLATES {
            cases.push(Case {
                cp: None,
                input: expand(t, &[("{name}", name), ("{NAME}", &upper)]),
            });
        }
    }
    for input in FIXED {
        cases.push(Case {
            cp: None,
            input: input.to_string(),
        });
    }
    cases.push(Case {
        cp: None,
        input: format!("&#{}65;", "0".repeat(4296)),
    });
    cases.push(Case {
        cp: None,
        input: format!("&#{}65;", "0".repeat(4299)),
    });
    cases
}

#[test]
fn slugify_matches_python_slugify() {
    let Some(python) = python() else {
        return;
    };
    let info: Info = serde_json::from_str(&run_script(&python, &["info"]))
        .expect("the test Python's info is JSON");
    assert!(
        !info.unidecode_installed,
        "{} has the Unidecode package installed, so python-slugify transliterates with it \
         instead of text-unidecode, which Prefect 1 installs; use a venv with only \
         prefect==1.4.1 and its dependencies",
        python.display()
    );
    let cases = corpus(&info);

    // Two Python processes slug the two halves while this thread slugs everything.
    let dir = tempfile::tempdir().unwrap();
    let half = cases.len() / 2;
    let parts: Vec<PathBuf> = [&cases[..half], &cases[half..]]
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let path = dir.path().join(format!("corpus-{i}.jsonl"));
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for case in part.iter() {
                serde_json::to_writer(&mut f, &case.input).unwrap();
                f.write_all(b"\n").unwrap();
            }
            f.flush().unwrap();
            path
        })
        .collect();
    let started = std::time::Instant::now();
    let workers: Vec<_> = parts
        .iter()
        .map(|path| {
            let (python, path) = (python.clone(), path.to_str().unwrap().to_string());
            std::thread::spawn(move || run_script(&python, &["slug", &path]))
        })
        .collect();
    let ours: Vec<String> = cases.iter().map(|c| slugify(&c.input)).collect();
    let theirs: Vec<String> = workers
        .into_iter()
        .flat_map(|w| {
            let out = w.join().unwrap();
            out.lines().map(String::from).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(theirs.len(), cases.len(), "one slug per input");

    // A character newer than the test Python's Unicode version is, to that Python, an
    // unassigned code point without a decomposition; its slug depends on the Python version
    // (Prefect 1 runs on 3.7 to 3.11, Unicode 11 to 14), so there is no one slug to match:
    // flowstore decomposes it as its own, newer, Unicode data says. Such mismatches are listed
    // apart and do not fail the test; every other one does.
    let (mut failing, mut newer) = (Vec::new(), Vec::new());
    for (case, (want, got)) in cases.iter().zip(theirs.iter().zip(&ours)) {
        if want == got {
            continue;
        }
        let cp = case.cp.map_or("-".to_string(), |cp| format!("U+{cp:04X}"));
        let line = format!("{cp}\t{:?}\twant {want:?}\tgot {got:?}", case.input);
        match case.cp {
            Some(cp) if !knows(&info, cp) => newer.push(line),
            _ => failing.push(line),
        }
    }
    let newer_cps: std::collections::BTreeSet<Option<u32>> = cases
        .iter()
        .zip(theirs.iter().zip(&ours))
        .filter(|(c, (w, g))| w != g && c.cp.is_some_and(|cp| !knows(&info, cp)))
        .map(|(c, _)| c.cp)
        .collect();
    let list = Path::new(env!("CARGO_TARGET_TMPDIR")).join("slugify-mismatches.tsv");
    let mut listing = failing.join("\n") + "\n";
    for line in &newer {
        listing.push_str(&format!(
            "newer than Python's Unicode {}: {line}\n",
            info.unicode
        ));
    }
    std::fs::write(&list, listing).unwrap();
    eprintln!(
        "python-slugify {} on Python {} (Unicode {}): {} inputs, {} mismatches; {} more at {} \
         code points newer than its Unicode; listed in {}; in {:.1?}",
        info.slugify,
        info.python,
        info.unicode,
        cases.len(),
        failing.len(),
        newer.len(),
        newer_cps.len(),
        list.display(),
        started.elapsed()
    );
    const SHOWN: usize = 1000;
    assert!(
        failing.is_empty(),
        "{} of {} inputs slug differently from python-slugify {} (Python {}, Unicode {}), all \
         listed in {}; the first {}:\n{}",
        failing.len(),
        cases.len(),
        info.slugify,
        info.python,
        info.unicode,
        list.display(),
        SHOWN.min(failing.len()),
        failing[..SHOWN.min(failing.len())].join("\n")
    );
}

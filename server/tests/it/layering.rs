//! Architecture and documentation invariants: the domain never imports the HTTP layer, and
//! docs/errors.md is exactly what the error table generates.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn domain_modules_never_import_actix_or_the_http_layer() {
    let mut files = Vec::new();
    for module in ["db", "rules", "auth", "storage", "functions", "realtime"] {
        let dir = src().join(module);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    for file in ["ratelimit.rs", "settings.rs"] {
        files.push(src().join(file));
    }
    assert!(!files.is_empty(), "no domain files found under {}", src().display());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for needle in ["actix", "crate::http"] {
            assert!(!text.contains(needle), "{} mentions `{needle}`", f.display());
        }
    }
}

#[test]
fn docs_errors_md_is_generated_from_the_error_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        on_disk,
        lightbase::error::errors_markdown(),
        "docs/errors.md is out of date: run `cargo run -- errors-doc > docs/errors.md`"
    );
}

#[test]
fn every_error_code_is_unique_and_4xx_unless_internal() {
    use lightbase::error::{Code, Kind};
    let mut seen = std::collections::HashSet::new();
    for c in Code::ALL {
        assert!(seen.insert(c.as_str()), "duplicate code {}", c.as_str());
        assert!(!c.description().is_empty());
        let s = c.http_status();
        match c.kind() {
            Kind::Internal | Kind::Unavailable => assert!(s >= 500),
            _ => assert!((400..500).contains(&s), "{} has status {s}", c.as_str()),
        }
    }
}

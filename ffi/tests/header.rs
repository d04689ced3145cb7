//! The hand-written header `include/shmring.h` against the Rust definitions
//! in `src/` (every `.rs` file there): every function, with its parameters' names and types and
//! its return type, every constant with its value, and the `shmring_stats`
//! fields must be the same on both sides (in the same order). Then the
//! header must compile as strict C99 and as C++.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A function as both sides must say it: return type, then (name, type) of
/// each parameter, types in a canonical C spelling (`const char*`).
type Signature = (String, Vec<(String, String)>);

/// One side's declarations: functions and callback types by name
/// (`fn NAME`, `typedef NAME`), constants by name, and the `shmring_stats`
/// fields in order.
type Side = (BTreeMap<String, Signature>, BTreeMap<String, i64>, Vec<(String, String)>);

/// (name, type) of each parameter in `text`, a Rust parameter list.
fn rust_params(text: &str, of: &str) -> Vec<(String, String)> {
    items(text)
        .into_iter()
        .map(|p| {
            let (n, t) = p.split_once(':').unwrap_or_else(|| panic!("{of}: parameter {p:?}"));
            (n.trim().to_owned(), c_type(t))
        })
        .collect()
}

/// A Rust return type (`-> T` or nothing) in C.
fn rust_return(text: &str) -> String {
    match text.trim().strip_prefix("->") {
        Some(t) => c_type(t),
        None => "void".to_owned(),
    }
}

/// Collapses whitespace and removes it around `*`.
fn canonical(c_type: &str) -> String {
    let collapsed = c_type.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.replace(" *", "*").replace("* ", "*")
}

/// The C spelling of a Rust FFI type.
fn c_type(rust: &str) -> String {
    let rust = rust.trim();
    if let Some(pointee) = rust.strip_prefix("*const ") {
        assert!(!pointee.trim().starts_with('*'), "a const pointer to a pointer: {rust}");
        return canonical(&format!("const {} *", c_type(pointee)));
    }
    if let Some(pointee) = rust.strip_prefix("*mut ") {
        return canonical(&format!("{} *", c_type(pointee)));
    }
    match rust {
        "c_char" => "char",
        "c_int" => "int",
        "c_void" => "void",
        "usize" => "size_t",
        "u64" => "uint64_t",
        "u32" => "uint32_t",
        "i64" => "int64_t",
        "i32" => "int32_t",
        name if name.starts_with("shmring_") => name,
        other => panic!("no C spelling for the Rust type {other:?}: extend the test"),
    }
    .to_owned()
}

/// Splits `text` at top-level commas (no nesting in these signatures).
fn items(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Every `.rs` file under `src/`, concatenated in path order.
fn rust_source() -> String {
    fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    collect(&dir().join("src"), &mut files);
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("src/lib.rs")), "no src/lib.rs among {files:?}");
    files.iter().map(|f| read(f) + "\n").collect()
}

fn rust_side() -> Side {
    let source = rust_source();
    let mut functions = BTreeMap::new();
    // Callback types: `pub type NAME = Option<unsafe extern "C" fn(PARAMS) -> RET>;`
    let mut code = String::new();
    for line in source.lines() {
        match line.strip_prefix("pub type ") {
            Some(def) => {
                let (name, ty) = def.split_once('=').unwrap();
                let ty = ty.trim().strip_prefix("Option<unsafe extern \"C\" fn(").expect("a C function pointer type");
                let (params, ret) = ty.strip_suffix(">;").unwrap().rsplit_once(')').unwrap();
                let name = format!("typedef {}", name.trim());
                functions.insert(name.clone(), (rust_return(ret), rust_params(params, &name)));
            }
            None => {
                code.push_str(line);
                code.push('\n');
            }
        }
    }
    let mut rest = code.as_str();
    while let Some(at) = rest.find("extern \"C\" fn ") {
        // Each must be exported under its own name.
        let before = &rest[..at];
        let attribute = before.rfind("#[no_mangle]").expect("an extern fn without #[no_mangle]");
        assert!(!before[attribute..].contains('}'), "an extern fn without #[no_mangle] right before it");
        let after = &rest[at + "extern \"C\" fn ".len()..];
        let open = after.find('(').unwrap();
        let name = format!("fn {}", after[..open].trim());
        let close = after.find(')').unwrap();
        let params = rust_params(&after[open + 1..close], &name);
        let body = after.find('{').unwrap();
        let ret = rust_return(&after[close + 1..body]);
        assert!(functions.insert(name.clone(), (ret, params)).is_none(), "{name} twice");
        rest = &after[body..];
    }
    let mut constants = BTreeMap::new();
    for line in source.lines() {
        if let Some(def) = line.strip_prefix("pub const ") {
            let (name, value) = def.split_once(':').unwrap();
            let value = value.split_once('=').unwrap().1.trim().trim_end_matches(';');
            constants.insert(name.trim().to_owned(), value.parse().unwrap());
        }
    }
    let stats = source.split("pub struct shmring_stats {").nth(1).expect("shmring_stats").split('}').next().unwrap();
    let fields = stats
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("pub "))
        .map(|f| {
            let (n, t) = f.trim_end_matches(',').split_once(':').unwrap();
            (n.trim().to_owned(), c_type(t))
        })
        .collect();
    (functions, constants, fields)
}

/// The header without comments.
fn uncommented(header: &str) -> String {
    let mut out = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("an unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A C declaration's (name, type): the trailing identifier is the name.
fn c_decl(decl: &str) -> (String, String) {
    let decl = decl.trim();
    let split = decl.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_').len();
    (decl[split..].to_owned(), canonical(&decl[..split]))
}

fn header_side() -> Side {
    let header = uncommented(&read(&dir().join("include/shmring.h")));
    let mut constants = BTreeMap::new();
    let mut code = String::new();
    for line in header.lines() {
        let line = line.trim();
        if let Some(def) = line.strip_prefix("#define ") {
            let mut words = def.split_whitespace();
            let (Some(name), Some(value)) = (words.next(), words.next()) else { continue };
            constants.insert(name.to_owned(), value.trim_matches(|c| c == '(' || c == ')').parse().unwrap());
        } else if !line.starts_with('#') && !line.starts_with("extern \"C\"") && line != "}" {
            code.push_str(line);
            code.push('\n');
        }
    }
    let (before, stats) = code.split_once("typedef struct shmring_stats {").expect("shmring_stats in the header");
    let (stats, after) = stats.split_once("} shmring_stats;").unwrap();
    let fields = stats.split(';').map(str::trim).filter(|f| !f.is_empty()).map(c_decl).collect();
    let mut functions = BTreeMap::new();
    for decl in format!("{before}{after}").split(';').map(str::trim).filter(|d| !d.is_empty()) {
        if decl.starts_with("typedef struct") {
            continue;
        }
        // `typedef RET (*NAME)(PARAMS)` or `RET NAME(PARAMS)`.
        let (name, ret, params) = match decl.strip_prefix("typedef ") {
            Some(def) => {
                let (ret, rest) = def.split_once("(*").unwrap_or_else(|| panic!("not a callback type: {decl:?}"));
                let (name, params) = rest.split_once(")(").unwrap();
                (format!("typedef {}", name.trim()), canonical(ret), params)
            }
            None => {
                let open = decl.find('(').unwrap_or_else(|| panic!("not a prototype: {decl:?}"));
                let (name, ret) = c_decl(&decl[..open]);
                (format!("fn {name}"), ret, &decl[open + 1..])
            }
        };
        let params = params.trim_end().strip_suffix(')').unwrap_or_else(|| panic!("{decl:?}"));
        let params = match params.trim() {
            "void" => Vec::new(),
            params => items(params).iter().map(|p| c_decl(p)).collect(),
        };
        assert!(functions.insert(name.clone(), (ret, params)).is_none(), "{name} declared twice");
    }
    (functions, constants, fields)
}

#[test]
fn header_matches_rust_signatures() {
    let (rust_fns, rust_consts, rust_fields) = rust_side();
    let (c_fns, c_consts, c_fields) = header_side();
    assert!(rust_fns.len() >= 30, "parsed only {} Rust functions", rust_fns.len());
    assert!(rust_fns.contains_key("typedef shmring_read_fn"), "the callback types are compared too");
    for (name, rust) in &rust_fns {
        match c_fns.get(name) {
            None => panic!("{name} is defined in src/ but not declared in include/shmring.h"),
            Some(c) => assert_eq!(c, rust, "{name}: header (left) and Rust (right) disagree"),
        }
    }
    for name in c_fns.keys() {
        assert!(rust_fns.contains_key(name), "{name} is declared in the header but not defined in src/");
    }
    assert_eq!(c_consts, rust_consts, "constants: header (left) and Rust (right) disagree");
    assert_eq!(c_fields, rust_fields, "shmring_stats: header (left) and Rust (right) disagree");
    assert_eq!(std::mem::size_of::<shmring_ffi::shmring_stats>(), 8 * c_fields.len());
}

/// The comparison itself catches a difference (a test of the test).
#[test]
fn a_changed_declaration_is_caught() {
    assert_eq!(c_type("*mut *mut shmring_consumer"), canonical("shmring_consumer **"));
    assert_eq!(c_type("*const c_char"), "const char*");
    assert_ne!(c_type("u32"), canonical("uint64_t"));
    assert_eq!(c_decl("const void *data"), ("data".to_owned(), "const void*".to_owned()));
}

fn compiles(compiler: &str, args: &[&str], source: &str) {
    let out = std::env::temp_dir().join(format!("shmring-header-{}-{compiler}.src", std::process::id()));
    std::fs::write(&out, source).unwrap();
    let include = dir().join("include");
    let output = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(&include)
        .args(["-Wall", "-Wextra", "-pedantic", "-Werror", "-fsyntax-only"])
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    let _ = std::fs::remove_file(&out);
    assert!(output.status.success(), "{compiler} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let source =
        "#include <shmring.h>\n#include <shmring.h>\nint main(void) {\n  shmring_stats s = {0, 0, 0, 0, 0};\n  \
                  (void)s;\n  return shmring_options_new() == NULL;\n}\n";
    compiles("cc", &["-std=c99", "-x", "c"], source);
    let cpp = source.replace("(void) {", "() {");
    compiles("c++", &["-std=c++11", "-x", "c++"], &cpp);
}

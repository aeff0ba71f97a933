//! Architecture rules for the import graph of `src/`, checked from the source text.
//!
//! Every `.rs` file under `src/` except `src/main.rs` is a node, named by its path.
//! Comments, string and char literals, and everything from a file's first `#[cfg(test)]`
//! on are ignored. A file has an edge to another file when it
//!
//! - names it in a `use` item (`pub use` too; nested braces are expanded), or
//! - writes an inline path starting with `crate::`, `super::` or `self::` anywhere.
//!
//! `super` and `self` are relative to the file's module (a `mod.rs` is its folder's
//! module), and a `use` path may also start with a child module the file declares
//! (`mod x;` then `use x::Y;`). Any other path is external and ignored. A path points at
//! the file of its longest prefix that is a module: `crate::error::AppError` is
//! `src/error.rs`. A `mod x;` declaration is not an edge, and neither is a self-reference.
//!
//! The rules:
//! 1. no files import each other, directly or through others (no cycles);
//! 2. plumbing (`http/`, `db/`, `edge/`, `mail/`, `jobs/`, `config.rs` and `config/`,
//!    `error.rs`, `kv.rs`, `telemetry.rs`) imports nothing under `domains/`, nor
//!    `app.rs`, `state.rs` or `cli.rs`;
//! 3. a domain (`domains/X/`) never reaches into another domain's store (`domains/Y/store`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

/// file -> (file it references -> the first path that references it)
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn is_word_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The index just past the first `close` from `i`; `\` escapes a char when `escapes`.
fn past(c: &[char], mut i: usize, close: &[char], escapes: bool) -> usize {
    while i < c.len() && !c[i..].starts_with(close) {
        i += if escapes && c[i] == '\\' { 2 } else { 1 };
    }
    i + close.len()
}

/// The tokens of a file (words, `::` and single punctuation), without comments, string
/// and char literals, nor anything from the first `#[cfg(test)]` on.
fn tokens(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let word = |k: usize| c.get(k).is_some_and(|&ch| is_word_char(ch));
    let (mut out, mut i) = (Vec::<String>::new(), 0);
    while i < c.len() {
        let (start, rest) = (i, &c[i..]);
        let r = i + usize::from(rest.starts_with(&['b', 'r'])); // `r"`, `r#"`, `br#"`...
        let hashes = c[r + 1..].iter().take_while(|&&ch| ch == '#').count();
        if rest.starts_with(&['/', '/']) {
            i = past(&c, i, &['\n'], false);
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while depth > 0 || i == start {
                match c.get(i..i + 2) {
                    Some(['/', '*']) => (depth, i) = (depth + 1, i + 2),
                    Some(['*', '/']) => (depth, i) = (depth - 1, i + 2),
                    Some(_) => i += 1,
                    None => break,
                }
            }
        } else if c[r] == 'r' && c.get(r + 1 + hashes) == Some(&'"') && !(i > 0 && word(i - 1)) {
            let close: Vec<char> = std::iter::once('"').chain(vec!['#'; hashes]).collect();
            i = past(&c, r + 2 + hashes, &close, false);
        } else if c[i] == '"' {
            i = past(&c, i + 1, &['"'], true);
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            i = past(&c, i + 1, &['\''], true); // a char literal; other quotes are lifetimes
        } else {
            i += match rest {
                _ if word(i) => (i..).take_while(|&k| word(k)).count(),
                [':', ':', ..] => 2,
                _ => 1,
            };
            if !c[start].is_whitespace() {
                out.push(c[start..i].iter().collect());
            }
        }
    }
    if let Some(end) = out.windows(7).position(|w| w.concat() == "#[cfg(test)]") {
        out.truncate(end);
    }
    out
}

/// `crate::{a::{b,c},d::e as f,g::{self,h}}` -> `crate::a::b`, `crate::a::c`, `crate::d::e`,
/// `crate::g`, `crate::g::h` (the tree is rebuilt from tokens, so ` as ` is its only space).
fn expand(tree: &str) -> Vec<String> {
    let mut depth = 0;
    let top_level_comma = move |ch| {
        depth += i32::from(ch == '{') - i32::from(ch == '}');
        ch == ',' && depth == 0
    };
    let mut out = Vec::new();
    for part in tree.split(top_level_comma).filter(|p| !p.is_empty()) {
        let Some((prefix, inner)) = part.split_once('{') else {
            out.extend(part.split(" as ").next().map(String::from));
            continue;
        };
        let prefix = prefix.trim_end_matches(':');
        for leaf in expand(inner.strip_suffix('}').unwrap_or(inner)) {
            out.push(match leaf.as_str() {
                "self" => prefix.to_string(),
                _ if prefix.is_empty() => leaf,
                _ => format!("{prefix}::{leaf}"),
            });
        }
    }
    out
}

/// The paths in a file's tokens, each with whether a `use` names it, and the child
/// modules the file declares (`mod x;`).
fn references(t: &[String]) -> (Vec<(String, bool)>, BTreeSet<&str>) {
    let (mut paths, mut children, mut k) = (Vec::new(), BTreeSet::new(), 0);
    while k < t.len() {
        if t[k] == "use" {
            let end = k + t[k..].iter().position(|x| x == ";").unwrap_or(t.len() - k);
            let tree = t[k + 1..end]
                .iter()
                .map(|x| if x == "as" { " as " } else { x });
            let tree: String = tree.collect();
            paths.extend(expand(&tree).into_iter().map(|path| (path, true)));
            k = end;
        } else if t[k] == "mod" && t.get(k + 2).is_some_and(|x| x == ";") {
            children.insert(t[k + 1].as_str());
        } else if ["crate", "super", "self"].contains(&&*t[k]) && (k == 0 || t[k - 1] != "::") {
            let mut j = k + 1;
            let word = |x: &String| x.starts_with(is_word_char);
            while t.get(j).is_some_and(|x| x == "::") && t.get(j + 1).is_some_and(word) {
                j += 2;
            }
            if j > k + 1 {
                paths.push((t[k..j].concat(), false));
            }
        }
        k += 1;
    }
    (paths, children)
}

/// `src/a/b.rs` and `src/a/b/mod.rs` -> `[a, b]`; `src/lib.rs` -> `[]`; `src/main.rs` -> none.
fn module_of(file: &str) -> Option<Vec<&str>> {
    let rel = file.strip_prefix("src/")?.strip_suffix(".rs")?;
    match rel.strip_suffix("/mod").unwrap_or(rel) {
        "main" => None,
        "lib" => Some(Vec::new()),
        rel => Some(rel.split('/').collect()),
    }
}

/// The import graph of sources keyed by their path (`src/...`).
fn build_graph(sources: &BTreeMap<String, String>) -> Graph {
    let module_files = sources.keys().filter_map(|f| Some((module_of(f)?, f)));
    let modules: BTreeMap<Vec<&str>, &String> = module_files.collect();
    let mut graph = Graph::new();
    for (file, src) in sources {
        let Some(me) = module_of(file) else { continue };
        let t = tokens(src);
        let (paths, children) = references(&t);
        let edges = graph.entry(file.clone()).or_default();
        for (path, in_use) in paths {
            let segs: Vec<&str> = path.split("::").filter(|s| *s != "*").collect();
            let Some(&head) = segs.first() else { continue };
            let mut module = match head {
                "crate" => Vec::new(),
                "super" | "self" => me.clone(),
                _ if in_use && children.contains(head) => me.clone(),
                _ => continue,
            };
            for &seg in &segs[usize::from(head == "crate")..] {
                match seg {
                    "super" => drop(module.pop()),
                    "self" => {}
                    _ => module.push(seg),
                }
            }
            while !module.is_empty() && !modules.contains_key(&module) {
                module.pop();
            }
            if let Some(&target) = modules.get(&module).filter(|t| **t != file) {
                edges.entry(target.clone()).or_insert(path);
            }
        }
    }
    graph
}

/// Strongly connected components of more than one file (Tarjan's algorithm).
fn tangles(g: &Graph) -> Vec<Vec<&str>> {
    #[derive(Default)]
    struct Tarjan<'g> {
        order: HashMap<&'g str, (usize, usize)>, // (visit order, lowest order it reaches)
        stack: Vec<&'g str>,
        found: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(g: &'g Graph, t: &mut Tarjan<'g>, v: &'g str) {
        t.order.insert(v, (t.order.len(), t.order.len()));
        t.stack.push(v);
        for w in g[v].keys().map(String::as_str) {
            if !t.order.contains_key(w) {
                visit(g, t, w);
            }
            if t.stack.contains(&w) {
                let low = t.order[w].1.min(t.order[v].1);
                t.order.get_mut(v).unwrap().1 = low;
            }
        }
        if t.order[v].0 == t.order[v].1 {
            let root = t.stack.iter().position(|x| *x == v).unwrap();
            let mut scc = t.stack.split_off(root);
            scc.sort();
            t.found.push(scc);
        }
    }
    let mut t = Tarjan::default();
    for v in g.keys() {
        if !t.order.contains_key(v.as_str()) {
            visit(g, &mut t, v);
        }
    }
    t.found.retain(|scc| scc.len() > 1);
    t.found.sort();
    t.found
}

/// A shortest cycle from `start` back to it within `scc` (breadth-first).
fn cycle_through<'g>(g: &'g Graph, scc: &[&str], start: &'g str) -> Vec<&'g str> {
    let (mut prev, mut queue) = (BTreeMap::<&str, &str>::new(), VecDeque::from([start]));
    while let Some(v) = queue.pop_front().filter(|_| !prev.contains_key(start)) {
        for w in g[v].keys().map(String::as_str).filter(|w| scc.contains(w)) {
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut cycle = vec![start, prev[start]];
    while cycle.last() != Some(&start) {
        cycle.push(prev[cycle.last().unwrap()]);
    }
    cycle.reverse();
    cycle
}

/// Cycles covering every file of every tangle, with the path behind each hop.
fn cycle_report(g: &Graph) -> Vec<String> {
    let mut reports = Vec::new();
    for scc in tangles(g) {
        let mut covered = BTreeSet::new();
        while let Some(&start) = scc.iter().find(|f| !covered.contains(*f)) {
            let cycle = cycle_through(g, &scc, start);
            let files = cycle.len() - 1;
            let mut report = format!("import cycle of {files} files: {}", cycle.join(" -> "));
            if scc.len() > files {
                report += &format!(" (one of the cycles tangling {} files)", scc.len());
            }
            for hop in cycle.windows(2) {
                report += &format!("\n    {} uses {}", hop[0], g[hop[0]][hop[1]]);
            }
            reports.push(report);
            covered.extend(cycle);
        }
    }
    reports
}

/// One report per file with edges for which `bad(file, target)` holds.
fn offences(g: &Graph, bad: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut reports = Vec::new();
    for (file, edges) in g {
        let mut report = format!("{file} references:");
        for (target, path) in edges.iter().filter(|(target, _)| bad(file, target)) {
            report += &format!("\n    {target} via {path}");
        }
        if report.contains('\n') {
            reports.push(report);
        }
    }
    reports
}

/// The entry of `src/` a file is in: `src/http/auth.rs` -> `http`, `src/kv.rs` -> `kv.rs`.
fn top(file: &str) -> &str {
    file.split('/').nth(1).unwrap_or_default()
}

fn plumbing_imports_domain(file: &str, target: &str) -> bool {
    let plumbing = "http db edge mail jobs config config.rs error.rs kv.rs telemetry.rs";
    let domain = "domains app.rs state.rs cli.rs";
    plumbing.split(' ').any(|p| p == top(file)) && domain.split(' ').any(|d| d == top(target))
}

/// `src/domains/X/rest` -> `(X, rest)`.
fn in_domain(file: &str) -> Option<(&str, &str)> {
    file.strip_prefix("src/domains/")?.split_once('/')
}

fn reads_foreign_store(file: &str, target: &str) -> bool {
    let (Some((mine, _)), Some((theirs, rest))) = (in_domain(file), in_domain(target)) else {
        return false;
    };
    mine != theirs && (rest == "store.rs" || rest.starts_with("store/"))
}

fn read_tree(dir: &Path, name: &str, sources: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let name = format!("{name}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            read_tree(&entry.path(), &name, sources);
        } else if name.ends_with(".rs") {
            sources.insert(name, std::fs::read_to_string(entry.path()).unwrap());
        }
    }
}

fn src_graph() -> Graph {
    let mut sources = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    read_tree(&src, "src", &mut sources);
    build_graph(&sources)
}

fn check(rule: &str, failures: Vec<String>) {
    let report = failures.join("\n\n");
    assert!(failures.is_empty(), "{rule}:\n\n{report}\n");
}

#[test]
fn the_modules_of_src_import_each_other_without_cycles() {
    let rule = "src/ files that import each other";
    check(rule, cycle_report(&src_graph()));
}

#[test]
fn plumbing_modules_import_no_domain() {
    let rule = "plumbing that imports a domain, app.rs, state.rs or cli.rs";
    check(rule, offences(&src_graph(), plumbing_imports_domain));
}

#[test]
fn a_domain_never_reads_another_domains_store() {
    let rule = "domains that read another domain's store";
    check(rule, offences(&src_graph(), reads_foreign_store));
}

fn sample(files: &[(&str, &str)]) -> Graph {
    let sources = files.iter().map(|(f, s)| (f.to_string(), s.to_string()));
    build_graph(&sources.collect())
}

#[test]
fn a_use_with_nested_braces_expands_to_every_imported_path() {
    let src = "pub use crate::{a::{b, c}, d::{self, e as f}};\nuse super::*;";
    let (paths, _) = references(&tokens(src));
    let paths: Vec<&str> = paths.iter().map(|(path, _)| path.as_str()).collect();
    let expected = "crate::a::b crate::a::c crate::d crate::d::e super::*";
    assert_eq!(paths.join(" "), expected);
}

#[test]
fn files_that_import_each_other_in_a_ring_are_reported_as_a_cycle() {
    let g = sample(&[
        ("src/lib.rs", "mod a;\nmod b;"),
        ("src/a/mod.rs", "mod x;\nuse x::Thing;"),
        ("src/a/x.rs", "pub fn f() { crate::b::g() }"),
        ("src/b.rs", "pub fn g() -> u8 { super::a::N }"),
    ]);
    let ring = "import cycle of 3 files: src/a/mod.rs -> src/a/x.rs -> src/b.rs -> src/a/mod.rs";
    let hops = "\n    src/a/mod.rs uses x::Thing\n    src/a/x.rs uses crate::b::g\n    \
                src/b.rs uses super::a::N";
    assert_eq!(cycle_report(&g), [format!("{ring}{hops}")]);
    assert!(cycle_report(&sample(&[("src/a.rs", "use crate::b;"), ("src/b.rs", "")])).is_empty());
}

#[test]
fn comments_literals_lifetimes_and_test_modules_make_no_edges() {
    let src = r##"
        // use crate::b;
        /* crate::b::f() /* nested */ crate::b::g() */
        fn f<'a>(x: &'a str) -> char { let _ = ("crate::b", r#"crate::b "" "#, b'\''); '"' }
        fn g<'b>() -> &'b str { "\"crate::b\"" }
        pub use self::inner::Kept;
        #[cfg(test)]
        mod tests { use crate::b::*; }
    "##;
    let g = sample(&[("src/a.rs", src), ("src/b.rs", ""), ("src/main.rs", src)]);
    assert!(g["src/a.rs"].is_empty(), "{:?}", g["src/a.rs"]);
    assert_eq!(g.len(), 2, "src/main.rs is not part of the graph");
}

#[test]
fn the_plumbing_and_store_rules_flag_what_they_forbid() {
    let (http, app, keys) = ("src/http/auth.rs", "src/app.rs", "src/domains/auth/keys.rs");
    let (users, admin) = ("src/domains/users/store.rs", "src/domains/admin/service.rs");
    assert!(plumbing_imports_domain(http, keys) && plumbing_imports_domain(http, app));
    assert!(!plumbing_imports_domain(keys, http) && !plumbing_imports_domain(app, http));
    assert!(reads_foreign_store(admin, users) && !reads_foreign_store(users, admin));
    assert!(!reads_foreign_store("src/domains/users/profile.rs", users));
}

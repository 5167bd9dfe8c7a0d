//! The layering rules of ARCHITECTURE.md, enforced by reading the workspace's manifests and
//! sources.
//!
//! Each invariant is one `#[test]`:
//!
//! 1. porchlight-protocol depends on no Porchlight crate and does no I/O, async, clock reads
//!    or OS randomness.
//! 2. porchlight-core (`node/core`, once it exists) depends on porchlight-protocol alone and
//!    never touches tokio, files, sockets, the clock or the OS RNG. Until it exists, its rules
//!    run against porchlight-protocol, which must pass them too.
//! 3. porchlight-sim never depends on porchlight-node or on a shell crate, and stays
//!    deterministic: no default-hashed `HashMap`/`HashSet`, no clock, no OS randomness.
//! 4. Only porchlight-node depends on the shell crates (libp2p, GStreamer, sled, axum,
//!    tower-http, hyper).
//! 5. Every workspace member exists and inherits the workspace's edition (2024) and lints.
//! 6. Every source file opens with a `//!` module doc.
//! 7. No module is a grab bag (`utils`, `util`, `helpers`, `misc`).
//!
//! Manifests are parsed with `toml`'s spanned parser ([`DeTable`]), which keeps byte offsets,
//! and dependencies inherited from `[workspace.dependencies]` are resolved (real package name
//! after a `package =` rename, default features, features) before any rule looks at them.
//! Sources are read through [`porchlight_tests::rust_source`], which ignores comments, doc
//! comments and literals. Every finding reads `path:line: what is wrong and why`, followed by
//! the offending line, and a test reports all its findings at once.
//!
//! The rules are plain functions from a [`Crate`] to findings, so the self-tests at the end
//! feed them a deliberately broken crate and check that each rule fires.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};

use porchlight_tests::rust_source::Source;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

const PROTOCOL: &str = "porchlight-protocol";
const CORE: &str = "porchlight-core";
const NODE: &str = "porchlight-node";
const SIM: &str = "porchlight-sim";

/// Where design.md puts porchlight-core.
const CORE_DIR: &str = "node/core";

const WORKSPACE_EDITION: &str = "2024";

/// The shells' crates: only porchlight-node may depend on them. Each name also covers its
/// family (`libp2p-swarm`, `gstreamer-app`, `axum-core`, `hyper-util`).
const SHELL_ONLY: &[&str] = &["libp2p", "gstreamer", "sled", "axum", "tower-http", "hyper"];

/// Runtime, network, media, storage and JSON crates the pure crates must not depend on.
const NOT_IN_PROTOCOL: &[&str] = &["tokio", "libp2p", "gstreamer", "sled", "axum", "serde_json"];
const NOT_IN_CORE: &[&str] = &["tokio", "libp2p", "gstreamer", "sled", "axum", "serde_json"];
const NOT_IN_SIM: &[&str] = &["tokio", "libp2p", "gstreamer", "sled", "axum"];

/// What porchlight-protocol's code must not name, and what naming it would mean.
const PROTOCOL_BANS: &[(&str, &str)] = &[
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("std::process", "processes"),
    ("std::thread", "threads"),
    ("std::env", "the environment"),
    ("tokio", "an async runtime"),
    ("async", "async code"),
    (".await", "async code"),
    ("SystemTime", "the wall clock"),
    ("Instant::now", "the monotonic clock"),
    ("OsRng", "the OS RNG"),
    ("thread_rng", "the OS-seeded thread RNG"),
    ("getrandom", "the OS RNG"),
];

/// What porchlight-core's code must not name. porchlight-protocol passes these too.
const CORE_BANS: &[(&str, &str)] = &[
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("tokio", "an async runtime"),
    ("SystemTime", "the wall clock"),
    ("Instant::now", "the monotonic clock"),
    ("OsRng", "the OS RNG"),
    ("thread_rng", "the OS-seeded thread RNG"),
    ("getrandom", "the OS RNG"),
];

/// What porchlight-sim's code must not name: anything that differs between two runs with the
/// same seed.
const SIM_BANS: &[(&str, &str)] = &[
    ("SystemTime", "the wall clock"),
    ("Instant::now", "the monotonic clock"),
    ("OsRng", "the OS RNG"),
    ("thread_rng", "the OS-seeded thread RNG"),
    ("RandomState", "a per-process random hasher"),
];

/// Module names that say nothing about what the module owns.
const GRAB_BAGS: &[&str] = &["utils", "util", "helpers", "misc"];

// ---------------------------------------------------------------------------------------------
// The invariants
// ---------------------------------------------------------------------------------------------

#[test]
fn protocol_depends_on_no_porchlight_crate_and_does_no_io() {
    let workspace = Workspace::load();
    assert_clean(
        protocol_findings(workspace.member(PROTOCOL)),
        "porchlight-protocol is pure: no Porchlight dependency, no I/O, async, clock or OS RNG",
    );
}

#[test]
fn core_depends_only_on_protocol_and_is_sans_io() {
    let workspace = Workspace::load();
    // protocol sits below core, so core's rules hold for it too; checking it keeps the rules
    // exercised against real code before core exists.
    let mut findings = core_findings(workspace.member(PROTOCOL));
    match workspace.find_member(CORE) {
        Some(core) => findings.extend(core_findings(core)),
        None => {
            let manifest = format!("{CORE_DIR}/Cargo.toml");
            assert!(
                !workspace.root.join(&manifest).exists(),
                "{manifest} exists but no workspace member is named {CORE}: \
                 name the package {CORE} and list \"{CORE_DIR}\" in the root Cargo.toml's \
                 [workspace] members",
            );
            eprintln!(
                "note: {manifest} does not exist yet; {CORE}'s rules were checked against \
                 {PROTOCOL} only"
            );
        }
    }
    assert_clean(
        findings,
        "porchlight-core depends on porchlight-protocol alone and never touches tokio, files, \
         sockets, the clock or the OS RNG",
    );
}

#[test]
fn sim_is_deterministic_and_never_depends_on_the_shells() {
    let workspace = Workspace::load();
    assert_clean(
        sim_findings(workspace.member(SIM)),
        "porchlight-sim drives the core alone (never porchlight-node or a shell crate) and \
         replays byte for byte from a seed",
    );
}

#[test]
fn only_node_depends_on_shell_crates() {
    let workspace = Workspace::load();
    let findings = workspace
        .members
        .iter()
        .filter(|member| member.name != NODE)
        .flat_map(shell_dependency_findings)
        .collect();
    assert_clean(
        findings,
        "only porchlight-node knows libp2p, GStreamer, sled, axum, tower-http and hyper",
    );
}

#[test]
fn members_exist_and_inherit_edition_and_lints() {
    let workspace = Workspace::load();
    let mut findings = workspace.edition_findings();
    findings.extend(workspace.missing_member_findings());
    findings.extend(workspace.members.iter().flat_map(inheritance_findings));
    assert_clean(
        findings,
        "every workspace member exists and uses `edition.workspace = true` (edition 2024) and \
         `[lints] workspace = true`",
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let workspace = Workspace::load();
    let findings = workspace
        .members
        .iter()
        .flat_map(module_doc_findings)
        .collect();
    assert_clean(
        findings,
        "every .rs file under a crate's src/ starts with a `//!` doc: what the module owns, \
         what it deliberately doesn't, and why",
    );
}

#[test]
fn no_module_is_a_grab_bag() {
    let workspace = Workspace::load();
    let findings = workspace
        .members
        .iter()
        .flat_map(grab_bag_findings)
        .collect();
    assert_clean(
        findings,
        "no module or file is named utils, util, helpers or misc: name it after what it owns",
    );
}

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

fn protocol_findings(protocol: &Crate) -> Vec<String> {
    let mut findings = Vec::new();
    for dep in &protocol.dependencies {
        if is_porchlight(&dep.package) {
            findings.push(protocol.dependency_finding(
                dep,
                "the protocol is the bottom layer and depends on no Porchlight crate",
            ));
        }
        if dep.kind == Kind::Dev {
            continue;
        }
        if let Some(family) = family_of(&dep.package, NOT_IN_PROTOCOL) {
            findings.push(protocol.dependency_finding(
                dep,
                format!("the protocol does no I/O or async ({family} belongs to the shells)"),
            ));
        }
        if reaches_os_rng(dep) {
            findings.push(protocol.dependency_finding(
                dep,
                "this reaches the OS RNG; the protocol takes its randomness as an argument",
            ));
        }
    }
    findings.extend(protocol.code_findings(
        PROTOCOL_BANS,
        "the protocol is deterministic given its inputs (time and randomness are passed in) \
         and leaves I/O to the shells",
    ));
    findings
}

fn core_findings(core: &Crate) -> Vec<String> {
    let mut findings = Vec::new();
    for dep in &core.dependencies {
        if is_porchlight(&dep.package) && dep.package != PROTOCOL {
            findings.push(core.dependency_finding(
                dep,
                format!("the core's only Porchlight dependency is {PROTOCOL}"),
            ));
        }
        if dep.kind == Kind::Dev {
            continue;
        }
        if let Some(family) = family_of(&dep.package, NOT_IN_CORE) {
            findings.push(core.dependency_finding(
                dep,
                format!("the core is sans-IO ({family} belongs to the shells)"),
            ));
        }
        if reaches_os_rng(dep) {
            findings.push(core.dependency_finding(
                dep,
                "this reaches the OS RNG; the core's randomness comes from its seed",
            ));
        }
    }
    findings.extend(core.code_findings(
        CORE_BANS,
        "the core is sans-IO (time and events arrive through `handle`, randomness from its seed)",
    ));
    findings
}

fn sim_findings(sim: &Crate) -> Vec<String> {
    let mut findings = Vec::new();
    for dep in &sim.dependencies {
        if is_porchlight(&dep.package) && dep.package != PROTOCOL && dep.package != CORE {
            findings.push(sim.dependency_finding(
                dep,
                format!(
                    "the simulator runs the shipped core: its Porchlight dependencies are \
                     {PROTOCOL} and {CORE}, never {NODE}"
                ),
            ));
        }
        if let Some(family) = family_of(&dep.package, NOT_IN_SIM) {
            findings.push(sim.dependency_finding(
                dep,
                format!("the simulator never builds the shells ({family} belongs to {NODE})"),
            ));
        }
    }
    findings
        .extend(sim.code_findings(SIM_BANS, "a simulation replays byte for byte from its seed"));
    for file in &sim.sources {
        // A type alias that fixes the hasher names `BuildHasherDefault` on its own line.
        let fixed_hasher = file.source.find("BuildHasherDefault");
        for container in ["HashMap", "HashSet"] {
            for line in file.source.find(container) {
                if !fixed_hasher.contains(&line) {
                    findings.push(file.finding(
                        line,
                        format!(
                            "{} names `{container}`, whose default hasher (RandomState) is \
                             seeded per process, so its iteration order differs between runs: \
                             use a BTreeMap/BTreeSet, or alias it with a fixed \
                             BuildHasherDefault hasher on the same line",
                            sim.name
                        ),
                    ));
                }
            }
        }
    }
    findings
}

fn shell_dependency_findings(krate: &Crate) -> Vec<String> {
    krate
        .dependencies
        .iter()
        .filter(|dep| dep.kind == Kind::Normal)
        .filter_map(|dep| {
            let family = family_of(&dep.package, SHELL_ONLY)?;
            Some(krate.dependency_finding(
                dep,
                format!("only {NODE} may depend on {family}: it is a shell's crate"),
            ))
        })
        .collect()
}

fn inheritance_findings(krate: &Crate) -> Vec<String> {
    let manifest = &krate.manifest;
    let doc = manifest.doc();
    let mut findings = Vec::new();
    let package = doc.get_key_value("package");
    match package.and_then(|(_, p)| p.get_ref().get("edition")) {
        Some(edition) if is_workspace_inherited(edition) => {}
        Some(edition) => findings.push(manifest.finding(
            edition.span().start,
            "set `edition.workspace = true`: the workspace fixes the edition for every crate",
        )),
        None => findings.push(manifest.finding(
            package.map_or(0, |(key, _)| key.span().start),
            "[package] has no edition: add `edition.workspace = true`",
        )),
    }
    match doc.get_key_value("lints") {
        Some((_, lints)) if is_workspace_inherited(lints) => {}
        Some((key, _)) => findings.push(manifest.finding(
            key.span().start,
            "[lints] must be exactly `workspace = true`: the workspace lints apply to every crate",
        )),
        None => findings.push(manifest.finding(
            package.map_or(0, |(key, _)| key.span().start),
            "no [lints] table: add `[lints]` with `workspace = true`",
        )),
    }
    findings
}

fn module_doc_findings(krate: &Crate) -> Vec<String> {
    krate
        .sources
        .iter()
        .filter_map(|file| {
            let (number, first) = file
                .source
                .text()
                .lines()
                .enumerate()
                .find(|(_, line)| !line.trim().is_empty())
                .map_or((1, ""), |(index, line)| (index + 1, line));
            (!first.trim_start().starts_with("//!")).then(|| {
                file.finding(
                    number,
                    "the file does not open with a `//!` module doc saying what it owns, what \
                     it deliberately doesn't, and why",
                )
            })
        })
        .collect()
}

fn grab_bag_findings(krate: &Crate) -> Vec<String> {
    let mut findings = Vec::new();
    for file in &krate.sources {
        let within_src = file
            .path
            .split_once("/src/")
            .map_or(file.path.as_str(), |(_, rest)| rest);
        let components = within_src.split('/');
        if let Some(name) = components
            .map(|component| component.trim_end_matches(".rs"))
            .find(|name| GRAB_BAGS.contains(name))
        {
            findings.push(file.finding(
                1,
                format!("`{name}` is a grab-bag name: name the module after what it owns"),
            ));
        }
        for name in GRAB_BAGS {
            for line in file.source.find(&format!("mod {name}")) {
                findings.push(file.finding(
                    line,
                    format!("`mod {name}` is a grab-bag name: name the module after what it owns"),
                ));
            }
        }
    }
    findings
}

fn is_porchlight(package: &str) -> bool {
    package.starts_with("porchlight")
}

/// The entry of `families` that `package` belongs to: the crate itself or one of its
/// `-`/`_`-suffixed siblings.
fn family_of<'a>(package: &str, families: &[&'a str]) -> Option<&'a str> {
    families.iter().copied().find(|family| {
        package == *family
            || package
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(['-', '_']))
    })
}

/// Whether `dep` brings in the operating system's RNG: `getrandom` itself, a `rand*` crate with
/// a feature that reaches it (`getrandom`, `os_rng`, `thread_rng`), or `rand` with its default
/// features or `std` (which enable getrandom in rand 0.8 and `os_rng` in 0.9).
fn reaches_os_rng(dep: &Dependency) -> bool {
    if dep.package == "getrandom" {
        return true;
    }
    if dep.package != "rand" && !dep.package.starts_with("rand_") {
        return false;
    }
    let has = |feature: &str| dep.features.iter().any(|f| f == feature);
    has("getrandom")
        || has("os_rng")
        || has("thread_rng")
        || (dep.package == "rand" && (dep.default_features || has("std")))
}

fn is_workspace_inherited(value: &Spanned<DeValue<'_>>) -> bool {
    value
        .get_ref()
        .as_table()
        .is_some_and(|table| table.len() == 1 && bool_at(table, "workspace") == Some(true))
}

fn assert_clean(findings: Vec<String>, invariant: &str) {
    assert!(
        findings.is_empty(),
        "architecture invariant broken: {invariant}\n{} finding(s):\n\n{}\n",
        findings.len(),
        findings.join("\n\n"),
    );
}

// ---------------------------------------------------------------------------------------------
// The workspace as the rules see it
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Workspace {
    root: PathBuf,
    manifest: Manifest,
    /// The `members` entries of the root manifest, with their byte offsets.
    member_dirs: Vec<(String, usize)>,
    /// The members whose manifest exists.
    members: Vec<Crate>,
}

impl Workspace {
    fn load() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = Manifest::read(&root, "Cargo.toml");
        let doc = manifest.doc();
        let workspace =
            table_at(&doc, "workspace").expect("the root Cargo.toml has a [workspace] table");
        let member_dirs: Vec<(String, usize)> = workspace
            .get("members")
            .and_then(|members| members.get_ref().as_array())
            .expect("the root Cargo.toml lists [workspace] members")
            .iter()
            .map(|member| {
                let dir = member
                    .get_ref()
                    .as_str()
                    .expect("workspace members are strings");
                assert!(
                    !dir.contains(['*', '?', '[']),
                    "Cargo.toml: member `{dir}` is a glob; the architecture test reads members \
                     literally, so list them one by one (or teach Workspace::load globs)",
                );
                (dir.to_owned(), member.span().start)
            })
            .collect();
        let inherited = table_at(workspace, "dependencies")
            .map(|deps| {
                deps.iter()
                    .map(|(key, value)| {
                        let key = key.get_ref().to_string();
                        let decl = Declaration::parse(value.get_ref());
                        (key, decl)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let members = member_dirs
            .iter()
            .filter(|(dir, _)| root.join(dir).join("Cargo.toml").is_file())
            .map(|(dir, _)| Crate::load(&root, dir, &inherited))
            .collect();
        drop(doc);
        Self {
            root,
            manifest,
            member_dirs,
            members,
        }
    }

    fn find_member(&self, name: &str) -> Option<&Crate> {
        self.members.iter().find(|member| member.name == name)
    }

    fn member(&self, name: &str) -> &Crate {
        self.find_member(name)
            .unwrap_or_else(|| panic!("Cargo.toml: no workspace member is named {name}"))
    }

    fn missing_member_findings(&self) -> Vec<String> {
        self.member_dirs
            .iter()
            .filter(|(dir, _)| !self.root.join(dir).join("Cargo.toml").is_file())
            .map(|(dir, offset)| {
                self.manifest.finding(
                    *offset,
                    format!("workspace member `{dir}` has no {dir}/Cargo.toml"),
                )
            })
            .collect()
    }

    fn edition_findings(&self) -> Vec<String> {
        let doc = self.manifest.doc();
        let edition = doc
            .get("workspace")
            .and_then(|workspace| workspace.get_ref().get("package"))
            .and_then(|package| package.get_ref().get("edition"));
        match edition {
            Some(edition) if edition.get_ref().as_str() == Some(WORKSPACE_EDITION) => Vec::new(),
            Some(edition) => vec![self.manifest.finding(
                edition.span().start,
                format!("[workspace.package] edition must be \"{WORKSPACE_EDITION}\""),
            )],
            None => vec![self.manifest.finding(
                0,
                format!("no [workspace.package] edition: add `edition = \"{WORKSPACE_EDITION}\"`"),
            )],
        }
    }
}

/// One crate: its manifest, its resolved dependencies and its `src/**/*.rs`.
#[derive(Debug)]
struct Crate {
    name: String,
    manifest: Manifest,
    dependencies: Vec<Dependency>,
    sources: Vec<SourceFile>,
}

impl Crate {
    fn load(root: &Path, dir: &str, inherited: &BTreeMap<String, Declaration>) -> Self {
        let manifest = Manifest::read(root, &format!("{dir}/Cargo.toml"));
        let files = rust_files(root, &format!("{dir}/src"));
        // An empty scan would pass every rule: make a wrong root or layout loud instead.
        assert!(
            !files.is_empty(),
            "{dir}/src has no .rs files; the architecture test would check nothing"
        );
        let sources = files
            .into_iter()
            .map(|path| {
                let text = fs::read_to_string(root.join(&path))
                    .unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
                SourceFile::new(path, text)
            })
            .collect();
        Self::new(manifest, inherited, sources)
    }

    fn new(
        manifest: Manifest,
        inherited: &BTreeMap<String, Declaration>,
        sources: Vec<SourceFile>,
    ) -> Self {
        let doc = manifest.doc();
        let name = table_at(&doc, "package")
            .and_then(|package| str_at(package, "name"))
            .unwrap_or_else(|| panic!("{}: [package] has no name", manifest.path))
            .to_owned();
        let dependencies = Dependency::all(&doc, inherited);
        drop(doc);
        Self {
            name,
            manifest,
            dependencies,
            sources,
        }
    }

    fn dependency_finding(&self, dep: &Dependency, why: impl Display) -> String {
        let named = if dep.key == dep.package {
            format!("`{}`", dep.package)
        } else {
            format!("`{}` (package `{}`)", dep.key, dep.package)
        };
        self.manifest.finding(
            dep.offset,
            format!("{} depends on {named} in {}: {why}", self.name, dep.section),
        )
    }

    /// A finding for each place the crate's code names a banned pattern.
    fn code_findings(&self, bans: &[(&str, &str)], why: &str) -> Vec<String> {
        let mut findings = Vec::new();
        for file in &self.sources {
            for (pattern, what) in bans {
                for line in file.source.find(pattern) {
                    findings.push(file.finding(
                        line,
                        format!("{} names `{pattern}` ({what}): {why}", self.name),
                    ));
                }
            }
        }
        findings
    }
}

#[derive(Debug)]
struct SourceFile {
    /// Relative to the workspace root, with `/` separators.
    path: String,
    source: Source,
}

impl SourceFile {
    fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            source: Source::new(text),
        }
    }

    fn finding(&self, line: usize, message: impl Display) -> String {
        format!(
            "{}:{line}: {message}\n    | {}",
            self.path,
            self.source.line(line).trim()
        )
    }
}

/// The `.rs` files under `dir` (relative to `root`), recursively, sorted.
fn rust_files(root: &Path, dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("cannot list {dir}: {err}"));
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{dir}/{name}");
            let file_type = entry
                .file_type()
                .unwrap_or_else(|err| panic!("cannot stat {path}: {err}"));
            if file_type.is_dir() {
                pending.push(path);
            } else if name.ends_with(".rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

// ---------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Manifest {
    /// Relative to the workspace root, with `/` separators.
    path: String,
    text: String,
}

impl Manifest {
    fn read(root: &Path, path: &str) -> Self {
        let text = fs::read_to_string(root.join(path))
            .unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
        Self::new(path, text)
    }

    fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        let manifest = Self {
            path: path.into(),
            text: text.into(),
        };
        manifest.doc();
        manifest
    }

    /// The parsed manifest; spans are byte offsets into `text`.
    fn doc(&self) -> DeTable<'_> {
        DeTable::parse(&self.text)
            .unwrap_or_else(|err| panic!("{}: not valid TOML: {err}", self.path))
            .into_inner()
    }

    fn finding(&self, offset: usize, message: impl Display) -> String {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let text = self.text.lines().nth(line - 1).unwrap_or("").trim();
        format!("{}:{line}: {message}\n    | {text}", self.path)
    }
}

fn table_at<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a DeTable<'i>> {
    table.get(key)?.get_ref().as_table()
}

fn str_at<'a>(table: &'a DeTable<'_>, key: &str) -> Option<&'a str> {
    table.get(key)?.get_ref().as_str()
}

fn bool_at(table: &DeTable<'_>, key: &str) -> Option<bool> {
    table.get(key)?.get_ref().as_bool()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Dev,
    Build,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Normal, Kind::Dev, Kind::Build];

    fn table(self) -> &'static str {
        match self {
            Kind::Normal => "dependencies",
            Kind::Dev => "dev-dependencies",
            Kind::Build => "build-dependencies",
        }
    }
}

/// A dependency as one manifest declares it, before workspace inheritance.
#[derive(Debug, Clone, Default)]
struct Declaration {
    package: Option<String>,
    default_features: Option<bool>,
    features: Vec<String>,
    workspace: bool,
}

impl Declaration {
    fn parse(value: &DeValue<'_>) -> Self {
        let Some(table) = value.as_table() else {
            // `name = "1.2"`: a version, everything else default.
            return Self::default();
        };
        let features = table
            .get("features")
            .and_then(|features| features.get_ref().as_array())
            .map(|features| {
                features
                    .iter()
                    .filter_map(|feature| feature.get_ref().as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            package: str_at(table, "package").map(str::to_owned),
            default_features: bool_at(table, "default-features")
                .or_else(|| bool_at(table, "default_features")),
            features,
            workspace: bool_at(table, "workspace") == Some(true),
        }
    }
}

/// A dependency with workspace inheritance resolved.
#[derive(Debug)]
struct Dependency {
    /// The name the manifest uses.
    key: String,
    /// The crate it names on the registry (differs from `key` after `package = "…"`).
    package: String,
    kind: Kind,
    /// The table it is declared in, e.g. `[dependencies]` or
    /// `[target.'cfg(unix)'.dev-dependencies]`.
    section: String,
    default_features: bool,
    features: Vec<String>,
    /// Byte offset of its key in the manifest.
    offset: usize,
}

impl Dependency {
    /// Every dependency of the manifest `doc`, target-specific ones included.
    fn all(doc: &DeTable<'_>, inherited: &BTreeMap<String, Declaration>) -> Vec<Self> {
        let mut sections: Vec<(String, Kind, &DeTable<'_>)> = Kind::ALL
            .iter()
            .filter_map(|&kind| {
                let table = table_at(doc, kind.table())?;
                Some((format!("[{}]", kind.table()), kind, table))
            })
            .collect();
        if let Some(targets) = table_at(doc, "target") {
            for (target, value) in targets {
                let Some(target_table) = value.get_ref().as_table() else {
                    continue;
                };
                for kind in Kind::ALL {
                    if let Some(table) = table_at(target_table, kind.table()) {
                        let section = format!("[target.'{}'.{}]", target.get_ref(), kind.table());
                        sections.push((section, kind, table));
                    }
                }
            }
        }
        let mut dependencies = Vec::new();
        for (section, kind, table) in sections {
            for (key, value) in table {
                let name = key.get_ref().to_string();
                let own = Declaration::parse(value.get_ref());
                let base = if own.workspace {
                    inherited.get(&name).cloned().unwrap_or_default()
                } else {
                    Declaration::default()
                };
                let package = base.package.or(own.package).unwrap_or_else(|| name.clone());
                // Cargo turns inherited default features off only when the workspace does.
                let default_features = if own.workspace {
                    base.default_features.unwrap_or(true) || own.default_features == Some(true)
                } else {
                    own.default_features.unwrap_or(true)
                };
                let mut features = base.features;
                features.extend(own.features);
                dependencies.push(Dependency {
                    key: name,
                    package,
                    kind,
                    section: section.clone(),
                    default_features,
                    features,
                    offset: key.span().start,
                });
            }
        }
        dependencies.sort_by_key(|dep| dep.offset);
        dependencies
    }
}

// ---------------------------------------------------------------------------------------------
// The rules can fail
// ---------------------------------------------------------------------------------------------

#[test]
fn source_scanner_finds_code_not_comments() {
    let code =
        Source::new("fn load() -> Vec<u8> {\n    std::fs::read(\"clip\").expect(\"x\")\n}\n");
    assert_eq!(code.find("std::fs"), vec![2]);

    let comment =
        Source::new("// std::fs::read would be I/O\n/// so would std::fs::read\nfn f() {}\n");
    assert_eq!(comment.find("std::fs"), Vec::<usize>::new());

    let literal = Source::new("const HINT: &str = \"std::fs::read\";\n");
    assert_eq!(literal.find("std::fs"), Vec::<usize>::new());
}

/// A protocol crate that breaks every rule once, with the workspace dependencies it inherits
/// from.
fn broken_crate() -> Crate {
    let inherited = BTreeMap::from([(
        "rand_core".to_owned(),
        Declaration {
            features: vec!["getrandom".to_owned()],
            ..Declaration::default()
        },
    )]);
    let manifest = Manifest::new(
        "protocol/Cargo.toml",
        concat!(
            "[package]\n",
            "name = \"porchlight-protocol\"\n",
            "edition = \"2021\"\n",
            "\n",
            "[dependencies]\n",
            "tokio = \"1\"\n",
            "net = { package = \"libp2p-swarm\", version = \"0.45\" }\n",
            "rand = \"0.8\"\n",
            "rand_core.workspace = true\n",
            "porchlight-node = { path = \"../node\" }\n",
            "\n",
            "[target.'cfg(unix)'.dev-dependencies]\n",
            "porchlight-sim = { path = \"../simulations\" }\n",
            "\n",
            "[build-dependencies.sled]\n",
            "version = \"0.34\"\n",
        ),
    );
    let sources = vec![
        SourceFile::new(
            "protocol/src/lib.rs",
            "//! A lib.\n\n// std::net in a comment is fine\nuse std::fs;\nmod utils;\n",
        ),
        SourceFile::new(
            "protocol/src/utils.rs",
            "use std::collections::HashMap;\npub async fn f() { let _ = std::time::Instant::now(); }\n",
        ),
    ];
    Crate::new(manifest, &inherited, sources)
}

fn assert_found(findings: &[String], expected: &[&str]) {
    for want in expected {
        assert!(
            findings.iter().any(|finding| finding.contains(want)),
            "no finding contains {want:?}; findings:\n{}",
            findings.join("\n"),
        );
    }
}

#[test]
fn rules_flag_a_broken_crate() {
    let broken = broken_crate();

    let findings = protocol_findings(&broken);
    assert_found(
        &findings,
        &[
            "protocol/Cargo.toml:6: porchlight-protocol depends on `tokio` in [dependencies]",
            "protocol/Cargo.toml:7: porchlight-protocol depends on `net` (package `libp2p-swarm`)",
            "protocol/Cargo.toml:8: porchlight-protocol depends on `rand` in [dependencies]: this reaches the OS RNG",
            "protocol/Cargo.toml:9: porchlight-protocol depends on `rand_core` in [dependencies]: this reaches the OS RNG",
            "protocol/Cargo.toml:10: porchlight-protocol depends on `porchlight-node`",
            "protocol/Cargo.toml:13: porchlight-protocol depends on `porchlight-sim` in [target.'cfg(unix)'.dev-dependencies]",
            "protocol/Cargo.toml:15: porchlight-protocol depends on `sled` in [build-dependencies]",
            "protocol/src/lib.rs:4: porchlight-protocol names `std::fs`",
            "protocol/src/utils.rs:2: porchlight-protocol names `async`",
            "protocol/src/utils.rs:2: porchlight-protocol names `Instant::now`",
        ],
    );
    assert!(
        !findings.iter().any(|finding| finding.contains("std::net")),
        "a comment was flagged: {findings:#?}"
    );
    assert_eq!(findings.len(), 10, "{findings:#?}");

    assert_found(
        &core_findings(&broken),
        &[
            "protocol/Cargo.toml:10: porchlight-protocol depends on `porchlight-node`",
            "protocol/Cargo.toml:13: porchlight-protocol depends on `porchlight-sim`",
            "protocol/Cargo.toml:6: porchlight-protocol depends on `tokio`",
        ],
    );
    assert_found(
        &sim_findings(&broken),
        &[
            "protocol/Cargo.toml:10: porchlight-protocol depends on `porchlight-node`",
            "protocol/src/utils.rs:1: porchlight-protocol names `HashMap`",
            "protocol/src/utils.rs:2: porchlight-protocol names `Instant::now`",
        ],
    );
    assert_found(
        &shell_dependency_findings(&broken),
        &["protocol/Cargo.toml:7: porchlight-protocol depends on `net` (package `libp2p-swarm`)"],
    );
    assert_found(
        &inheritance_findings(&broken),
        &[
            "protocol/Cargo.toml:3: set `edition.workspace = true`",
            "protocol/Cargo.toml:1: no [lints] table",
        ],
    );
    assert_found(
        &module_doc_findings(&broken),
        &["protocol/src/utils.rs:1: the file does not open with a `//!` module doc"],
    );
    assert_found(
        &grab_bag_findings(&broken),
        &[
            "protocol/src/utils.rs:1: `utils` is a grab-bag name",
            "protocol/src/lib.rs:5: `mod utils` is a grab-bag name",
        ],
    );
}

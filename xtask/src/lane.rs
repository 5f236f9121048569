//! The Windows lane's invariants, checked on Linux in `cargo test --workspace`: a change to
//! `.github/workflows/windows.yml` cannot silently unpin it, stop building with
//! [`CARGO_WDK_BUILD`], or drop one of the assertions README's "Build and package (on
//! Windows)" promises. The lane itself runs only on a Windows runner; this reads its file.
//!
//! Also here: the WDK driver metadata is in one place in `Cargo.toml` (the package table that
//! cargo-wdk requires), and the `rpcrt4.lib` the real link gets (`build.rs`) is the import
//! library `xtask/link/rpcrt4.def` describes.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use crate::image::ALLOWED_IMPORTS;
use crate::sys::BASE_LIBRARIES;
use crate::windows::{CARGO_WDK_BUILD, CARGO_WDK_VERSION, INX, PACKAGE_DIR, PACKAGE_FILES, TARGET};

/// What the workflow must agree with, taken from the rest of the repository.
pub struct Expect {
    /// The build command line: `cargo ` and [`CARGO_WDK_BUILD`].
    pub cargo_wdk: String,
    /// The KMDF version of `Cargo.toml`'s driver metadata, `major.minor`.
    pub kmdf: String,
    /// The workspace's `rust-version` (`major.minor`): the pinned toolchain may not be older.
    pub rust_version: (u32, u32),
}

impl Expect {
    /// The expectations of this repository.
    pub fn of_repository(root: &Path) -> Result<Self, String> {
        let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
            .map_err(|e| format!("Cargo.toml: {e}"))?;
        let kmdf = wdk_metadata(&manifest)?;
        let table: toml::Table = manifest.parse().map_err(|e| format!("Cargo.toml: {e}"))?;
        let rust_version = table
            .get("workspace")
            .and_then(|w| w.get("package"))
            .and_then(|p| p.get("rust-version"))
            .and_then(toml::Value::as_str)
            .and_then(|v| {
                let mut parts = v.split('.').map(str::parse::<u32>);
                Some((parts.next()?.ok()?, parts.next()?.ok()?))
            })
            .ok_or("Cargo.toml: no workspace rust-version")?;
        Ok(Self {
            cargo_wdk: format!("cargo {}", CARGO_WDK_BUILD.join(" ")),
            kmdf,
            rust_version,
        })
    }
}

/// The KMDF version (`major.minor`) of the driver's WDK metadata, which must be in the
/// package table (`[package.metadata.wdk.driver-model]`, what cargo-wdk packages by) and
/// nowhere else (no `[workspace.metadata.wdk]`: wdk-build reads both, one copy is enough).
pub fn wdk_metadata(manifest: &str) -> Result<String, String> {
    let table: toml::Table = manifest.parse().map_err(|e| format!("Cargo.toml: {e}"))?;
    let at = |path: &[&str]| -> Option<&toml::Value> {
        let (first, rest) = path.split_first()?;
        rest.iter()
            .try_fold(table.get(*first)?, |v, key| v.get(*key))
    };
    if at(&["workspace", "metadata", "wdk"]).is_some() {
        return Err(
            "Cargo.toml: [workspace.metadata.wdk] duplicates the driver's \
             [package.metadata.wdk]: keep the metadata in the package table only"
                .into(),
        );
    }
    let model = at(&["package", "metadata", "wdk", "driver-model"])
        .ok_or("Cargo.toml: no [package.metadata.wdk.driver-model] (cargo-wdk packages by it)")?;
    let field = |key: &str| {
        model
            .get(key)
            .ok_or_else(|| format!("driver-model: no {key}"))
    };
    if field("driver-type")?.as_str() != Some("KMDF") {
        return Err("driver-model: driver-type is not KMDF".into());
    }
    let major = field("kmdf-version-major")?
        .as_integer()
        .ok_or("kmdf-version-major")?;
    let minor = field("target-kmdf-version-minor")?
        .as_integer()
        .ok_or("target-kmdf-version-minor")?;
    Ok(format!("{major}.{minor}"))
}

/// One step of a job: its name, action and script.
struct Step {
    name: String,
    uses: String,
    run: String,
    with: Yaml,
}

fn is_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `vX.Y.Z` (or `X.Y.Z` without the `v`): an exact release.
fn is_exact_version(s: &str) -> bool {
    let s = s.strip_prefix('v').unwrap_or(s);
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Every `uses:` of the file must name a local composite action or be pinned: a full-length
/// commit SHA with its release tag in a comment, or an exact release tag.
fn pin_findings(workflow: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in workflow.lines().enumerate() {
        let line = line.trim_start();
        let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
        let Some(rest) = line.strip_prefix("uses:") else {
            continue;
        };
        let (value, comment) = rest
            .split_once('#')
            .map_or((rest.trim(), ""), |(v, c)| (v.trim(), c.trim()));
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        if value.starts_with("./") {
            if !value.starts_with("./.github/actions/") {
                out.push(format!(
                    "line {}: local action {value} is not one of the pinned composite actions",
                    n + 1
                ));
            }
            continue;
        }
        match value.rsplit_once('@') {
            Some((_, r)) if is_sha(r) && is_exact_version(comment) => {}
            Some((_, r)) if is_sha(r) => out.push(format!(
                "line {}: {value} is pinned by SHA but no `# vX.Y.Z` comment says which release",
                n + 1
            )),
            Some((_, r)) if is_exact_version(r) => {}
            _ => out.push(format!(
                "line {}: {value} is not pinned to a full-length commit SHA or an exact release tag",
                n + 1
            )),
        }
    }
    out
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The native-command lines of a script (a tool run through `& $env:TOOL`, or `certutil`,
/// `rustup`, `cargo install`) whose next line does not read `$LASTEXITCODE`: PowerShell does
/// not stop on a failing native command, and only the script's last exit code reaches the
/// runner.
fn unchecked_native_calls(script: &str) -> Vec<String> {
    let lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let native = line.contains("& $env:")
            || line.starts_with("certutil ")
            || line.starts_with("rustup ")
            || line.starts_with("cargo install ");
        if !native || i + 1 == lines.len() {
            continue;
        }
        let checked = lines
            .get(i + 1)
            .is_some_and(|l| l.contains("$LASTEXITCODE"));
        if !checked {
            out.push((*line).to_owned());
        }
    }
    out
}

/// The items of the PowerShell array literal `$name = @('a', 'b')` in `script`.
fn array_literal(script: &str, name: &str) -> Option<Vec<String>> {
    let start = script.find(&format!("${name} = @("))?;
    let rest = script.get(start..)?;
    let open = rest.find('(')?;
    let close = rest.find(')')?;
    Some(
        rest.get(open + 1..close)?
            .split(',')
            .map(|s| s.trim().trim_matches('\'').to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// What is wrong with `workflow` (the text of `.github/workflows/windows.yml`); empty when
/// every invariant holds.
#[must_use]
pub fn findings(workflow: &str, expect: &Expect) -> Vec<String> {
    let mut out = pin_findings(workflow);
    let docs = match YamlLoader::load_from_str(workflow) {
        Ok(docs) => docs,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let Some(doc) = docs.first() else {
        return vec!["empty workflow".into()];
    };
    if workflow.contains("cargo make") || workflow.contains("Makefile.toml") {
        out.push("the cargo-make flow is gone: the lane builds with cargo wdk".into());
    }
    if !doc["env"]["RUSTFLAGS"].is_badvalue() {
        out.push("RUSTFLAGS would replace .cargo/config.toml's +crt-static rustflags".into());
    }
    let Some(jobs) = doc["jobs"].as_hash() else {
        return vec!["no jobs".into()];
    };
    let mut built = false;
    for (id, job) in jobs {
        let id = text(id);
        let runs_on = text(&job["runs-on"]);
        if !(runs_on.starts_with("windows-")
            && runs_on["windows-".len()..]
                .bytes()
                .all(|b| b.is_ascii_digit())
            && runs_on.len() > "windows-".len())
        {
            out.push(format!(
                "job {id}: runs-on `{runs_on}` is not a pinned Windows image (windows-NNNN)"
            ));
        }
        if text(&job["defaults"]["run"]["shell"]) != "pwsh" {
            out.push(format!("job {id}: run steps must default to pwsh"));
        }
        let env = &job["env"];
        if !env["RUSTFLAGS"].is_badvalue() {
            out.push(format!(
                "job {id}: RUSTFLAGS would replace .cargo/config.toml's +crt-static rustflags"
            ));
        }
        let toolchain = text(&env["RUSTUP_TOOLCHAIN"]);
        let version: Vec<u32> = toolchain
            .split('.')
            .filter_map(|p| p.parse().ok())
            .collect();
        match version.as_slice() {
            [major, minor, _] if is_exact_version(&toolchain) => {
                if (*major, *minor) < expect.rust_version {
                    out.push(format!(
                        "job {id}: Rust {toolchain} is older than the workspace's rust-version \
                         {}.{}",
                        expect.rust_version.0, expect.rust_version.1
                    ));
                }
            }
            _ => out.push(format!(
                "job {id}: env RUSTUP_TOOLCHAIN `{toolchain}` is not an exact Rust release"
            )),
        }
        let steps: Vec<Step> = job["steps"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .map(|s| Step {
                        name: text(&s["name"]),
                        uses: text(&s["uses"]),
                        run: text(&s["run"]),
                        with: s["with"].clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for step in &steps {
            for call in unchecked_native_calls(&step.run) {
                out.push(format!(
                    "step `{}`: `{call}` is not followed by a $LASTEXITCODE check",
                    step.name
                ));
            }
        }
        built |= job_findings(&id, job, &steps, expect, &mut out);
    }
    if !built {
        out.push(format!("no job runs `{}`", expect.cargo_wdk));
    }
    out
}

/// The checks of the job that builds the package; whether `steps` builds it at all.
fn job_findings(
    id: &str,
    job: &Yaml,
    steps: &[Step],
    expect: &Expect,
    out: &mut Vec<String>,
) -> bool {
    let position = |pred: &dyn Fn(&Step) -> bool| steps.iter().position(pred);
    let builds: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.run.contains("cargo wdk build"))
        .map(|(i, _)| i)
        .collect();
    let Some(&build) = builds.first() else {
        return false;
    };
    let mut need = |what: String, ok: bool| {
        if !ok {
            out.push(format!("job {id}: {what}"));
        }
    };
    need(
        format!("one step runs exactly `{}`", expect.cargo_wdk),
        builds.len() == 1 && steps[build].run.trim() == expect.cargo_wdk,
    );
    let local = steps.iter().any(|s| s.uses.starts_with("./"));
    let drivers_rs = position(&|s: &Step| {
        s.uses.starts_with("actions/checkout@")
            && text(&s.with["repository"]) == "microsoft/windows-drivers-rs"
    });
    need(
        "windows-drivers-rs's composite actions are checked out at a full commit SHA".into(),
        !local || drivers_rs.is_some_and(|i| is_sha(&text(&steps[i].with["ref"]))),
    );
    let with_of = |action: &str, key: &str| {
        steps
            .iter()
            .find(|s| s.uses.ends_with(action))
            .map(|s| text(&s.with[key]))
            .unwrap_or_default()
    };
    let llvm = with_of("/install-llvm", "version");
    need(
        format!("LLVM pinned to an exact release (`{llvm}`)"),
        is_exact_version(&llvm),
    );
    let wdk = with_of("/install-wdk", "version");
    let wdk_parts: Vec<&str> = wdk.split('.').collect();
    need(
        format!("the WDK pinned to a full NuGet version 10.0.NNNNN.QFE (`{wdk}`)"),
        wdk_parts.len() == 4
            && wdk.starts_with("10.0.")
            && wdk_parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
    );
    need(
        "the WDK comes from NuGet".into(),
        with_of("/install-wdk", "source") == "nuget",
    );
    need(
        format!("the pinned toolchain is installed with the {TARGET} target"),
        steps.iter().any(|s| {
            s.run
                .contains("rustup toolchain install $env:RUSTUP_TOOLCHAIN")
                && s.run.contains(TARGET)
        }),
    );
    need(
        format!("cargo-wdk {CARGO_WDK_VERSION} is installed exactly (--version, --locked)"),
        steps.iter().any(|s| {
            s.run.contains(&format!(
                "cargo install cargo-wdk --version {CARGO_WDK_VERSION} --locked"
            ))
        }),
    );
    let stage = position(&|s: &Step| {
        s.run.contains("Copy-Item")
            && s.run.contains(&format!("-LiteralPath {}", INX.0))
            && s.run.contains(&format!("-Destination {}", INX.1))
    });
    need(
        format!("{} is staged as {} before the build", INX.0, INX.1),
        stage.is_some_and(|i| i < build),
    );
    let kmdf = &expect.kmdf;
    let kit = position(&|s: &Step| {
        s.run
            .contains(&format!("'Include\\wdf\\kmdf\\{kmdf}\\wdf.h'"))
            && s.run
                .contains(&format!("'Lib\\wdf\\kmdf\\x64\\{kmdf}\\WdfLdr.lib'"))
            && s.run.contains(&format!(
                "'Lib\\wdf\\kmdf\\x64\\{kmdf}\\WdfDriverEntry.lib'"
            ))
            && BASE_LIBRARIES
                .iter()
                .filter(|l| !l.starts_with("Wdf"))
                .chain(std::iter::once(&"aux_klib"))
                .all(|l| s.run.contains(&format!("\"Lib\\$sdk\\km\\x64\\{l}.lib\"")))
    });
    need(
        format!(
            "before the build, a step checks that the WDK has KMDF {kmdf}'s headers and \
             libraries and every km library of the link"
        ),
        kit.is_some_and(|i| i < build),
    );
    let package_dir = format!("target\\{}", PACKAGE_DIR.replace('/', "\\"));
    need(
        format!("env PACKAGE_DIR is {package_dir}"),
        text(&job["env"]["PACKAGE_DIR"]) == package_dir,
    );
    let after = |pred: &dyn Fn(&Step) -> bool| {
        steps
            .iter()
            .enumerate()
            .skip(build + 1)
            .find(|(_, s)| pred(s))
            .map(|(i, _)| i)
    };
    need(
        "after the build, a step asserts the package files (sys, inf, cat, certificate)".into(),
        after(&|s: &Step| {
            s.run.contains("Test-Path")
                && PACKAGE_FILES
                    .iter()
                    .chain(std::iter::once(&"WDRLocalTestCert.cer"))
                    .all(|f| s.run.contains(&format!("'{f}'")))
        })
        .is_some(),
    );
    need(
        "after the build, a step asserts that stampinf stamped DriverVer".into(),
        after(&|s: &Step| s.run.contains("DriverVer") && s.run.contains(INX.0)).is_some(),
    );
    let certs = after(&|s: &Step| {
        s.run.contains("certutil -addstore -f $store")
            && s.run.contains("'Root', 'TrustedPublisher'")
            && s.run.contains("Cert:\\LocalMachine\\$store\\$thumbprint")
    });
    need(
        "after the build, the test certificate is imported into LocalMachine Root and \
         TrustedPublisher and found there"
            .into(),
        certs.is_some(),
    );
    let verify = after(&|s: &Step| {
        [
            "verify /v /pa $sys",
            "verify /v /pa $cat",
            "verify /v /pa /c $cat $sys",
        ]
        .iter()
        .all(|v| s.run.contains(&format!("& $env:SIGNTOOL {v}")))
    });
    need(
        "signtool verify /v /pa on vmballoon.sys and vmballoon.cat (and /c), after the \
         certificate import"
            .into(),
        matches!((certs, verify), (Some(c), Some(v)) if c < v),
    );
    need(
        "after the build, infverif /v /w with errors and warnings failing the step".into(),
        after(&|s: &Step| {
            s.run.contains("& $env:INFVERIF /v /w $inf") && s.run.contains("(ERROR|WARN(ING)?)")
        })
        .is_some(),
    );
    let imports = after(&|s: &Step| s.run.contains("& $env:DUMPBIN /nologo /dependents $sys"))
        .and_then(|i| array_literal(&steps[i].run, "allowed"));
    need(
        format!("after the build, the driver's imports are checked against {ALLOWED_IMPORTS:?}"),
        imports.is_some_and(|list| list == ALLOWED_IMPORTS),
    );
    let upload = position(&|s: &Step| s.uses.starts_with("actions/upload-artifact@"));
    need(
        "the package is uploaded (path = the package, if-no-files-found: error)".into(),
        upload.is_some_and(|i| {
            i > build
                && text(&steps[i].with["path"]) == format!("target/{PACKAGE_DIR}/")
                && text(&steps[i].with["if-no-files-found"]) == "error"
        }),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = include_str!("../../.github/workflows/windows.yml");

    fn expect() -> Expect {
        Expect::of_repository(&crate::root()).unwrap()
    }

    #[test]
    fn the_windows_workflow_keeps_every_invariant() {
        let findings = findings(WORKFLOW, &expect());
        assert!(findings.is_empty(), "{}", findings.join("\n"));
    }

    #[test]
    fn each_invariant_fails_when_broken() {
        let expect = expect();
        let cases: &[(&str, &str, &str)] = &[
            (
                "@d23441a48e516b6c34aea4fa41551a30e30af803 # v6.1.0",
                "@v6",
                "not pinned",
            ),
            (
                "# v6.1.0\n        with:\n          persist",
                "\n        with:\n          persist",
                "no `# vX.Y.Z`",
            ),
            (
                "ref: 7d3000c6e60041c6ea1ab75abebe411e6482fca6",
                "ref: main",
                "full commit SHA",
            ),
            (
                "runs-on: windows-2025",
                "runs-on: windows-latest",
                "pinned Windows image",
            ),
            (
                "RUSTUP_TOOLCHAIN: 1.95.0",
                "RUSTUP_TOOLCHAIN: stable",
                "exact Rust release",
            ),
            (
                "RUSTUP_TOOLCHAIN: 1.95.0",
                "RUSTUP_TOOLCHAIN: 1.80.0",
                "older than",
            ),
            (
                "CARGO_TERM_COLOR: always",
                "RUSTFLAGS: -Dwarnings",
                "RUSTFLAGS",
            ),
            (
                "permissions:\n",
                "env:\n  RUSTFLAGS: -Dwarnings\n\npermissions:\n",
                "RUSTFLAGS",
            ),
            (
                "PACKAGE_DIR: target\\x86_64",
                "PACKAGE_DIR: target\\release\\x86_64",
                "PACKAGE_DIR",
            ),
            ("--version 0.2.0 --locked", "--locked", "cargo-wdk 0.2.0"),
            (
                "version: 10.0.26100.6584",
                "version: 10.0.26100",
                "full NuGet version",
            ),
            ("version: 17.0.6", "version: latest", "LLVM"),
            (
                "--target-platform windows --locked\n",
                "--target-platform windows\n",
                "runs exactly",
            ),
            (
                "Copy-Item -LiteralPath inf/vmballoon.inx",
                "Copy-Item -LiteralPath inf/other.inx",
                "staged",
            ),
            (
                "'Include\\wdf\\kmdf\\1.31\\wdf.h'",
                "'Include\\wdf\\kmdf\\1.33\\wdf.h'",
                "KMDF 1.31",
            ),
            (
                "\"Lib\\$sdk\\km\\x64\\aux_klib.lib\"",
                "\"Lib\\$sdk\\km\\x64\\other.lib\"",
                "km library",
            ),
            (
                "'vmballoon.cat', 'vmballoon.pdb'",
                "'vmballoon.pdb'",
                "package files",
            ),
            ("'Root', 'TrustedPublisher'", "'Root'", "TrustedPublisher"),
            (
                "& $env:SIGNTOOL verify /v /pa $cat\n",
                "",
                "signtool verify",
            ),
            (
                "          if ($LASTEXITCODE) { throw \"signtool verify /v /pa vmballoon.sys failed ($LASTEXITCODE)\" }\n",
                "",
                "$LASTEXITCODE check",
            ),
            (
                "& $env:INFVERIF /v /w $inf",
                "& $env:INFVERIF /v /u $inf",
                "infverif",
            ),
            (
                "'ntoskrnl.exe', 'HAL.dll', 'WDFLDR.SYS')",
                "'ntoskrnl.exe', 'HAL.dll', 'WDFLDR.SYS', 'RPCRT4.dll')",
                "imports",
            ),
            (
                "if-no-files-found: error",
                "if-no-files-found: warn",
                "uploaded",
            ),
            (
                "      - name: cargo wdk build\n",
                "      - name: cargo make\n        run: cargo make\n      - name: cargo wdk build\n",
                "cargo-make",
            ),
        ];
        for (from, to, phrase) in cases {
            assert!(
                WORKFLOW.contains(from),
                "the workflow no longer contains {from:?}"
            );
            let broken = WORKFLOW.replacen(from, to, 1);
            let found = findings(&broken, &expect);
            assert!(
                found.iter().any(|f| f.contains(phrase)),
                "replacing {from:?} with {to:?} went unnoticed (expected `{phrase}`): {found:#?}"
            );
        }
    }

    #[test]
    fn the_wdk_metadata_is_in_the_package_table_only() {
        let manifest = std::fs::read_to_string(crate::root().join("Cargo.toml")).unwrap();
        assert_eq!(wdk_metadata(&manifest).unwrap(), "1.31");
        let duplicated =
            format!("{manifest}\n[workspace.metadata.wdk.driver-model]\ndriver-type = \"KMDF\"\n");
        assert!(
            wdk_metadata(&duplicated)
                .unwrap_err()
                .contains("duplicates")
        );
        let moved = manifest.replace(
            "[package.metadata.wdk.driver-model]",
            "[package.metadata.other]",
        );
        assert!(
            wdk_metadata(&moved)
                .unwrap_err()
                .contains("no [package.metadata.wdk")
        );
    }

    #[test]
    fn readme_shows_the_lanes_command_line() {
        let readme = include_str!("../../README.md");
        let expect = expect();
        assert!(
            readme.contains(&expect.cargo_wdk),
            "README lacks `{}`",
            expect.cargo_wdk
        );
        assert!(readme.contains("cargo xtask package"));
        assert!(
            !readme.contains("cargo make"),
            "README still documents cargo-make"
        );
        assert!(
            !crate::root().join("Makefile.toml").exists(),
            "Makefile.toml is back"
        );
    }

    /// The bytes `build.rs` gives the real link as `rpcrt4.lib`: an AMD64 import library
    /// whose one import is RPCRT4.dll's `UuidCreate`, by name, as code.
    #[test]
    fn the_windows_links_rpcrt4_lib_is_the_def_files_import_library() {
        use object::read::archive::ArchiveFile;
        use object::read::coff::{ImportFile, ImportName, ImportType};

        let def = std::fs::read_to_string(crate::root().join("xtask/link/rpcrt4.def")).unwrap();
        let bytes = vmballoon_import_lib::from_def(&def).unwrap();
        let archive = ArchiveFile::parse(bytes.as_slice()).unwrap();
        let mut imports = Vec::new();
        for member in archive.members() {
            let data = member.unwrap().data(bytes.as_slice()).unwrap();
            if let Ok(import) = ImportFile::parse(data) {
                assert_eq!(import.architecture(), object::Architecture::X86_64);
                assert_eq!(import.import_type(), ImportType::Code);
                assert!(matches!(import.import(), ImportName::Name(b"UuidCreate")));
                imports.push((
                    String::from_utf8_lossy(import.dll()).into_owned(),
                    String::from_utf8_lossy(import.symbol()).into_owned(),
                ));
            }
        }
        assert_eq!(
            imports,
            [("RPCRT4.dll".to_owned(), "UuidCreate".to_owned())]
        );
        let symbols: Vec<String> = archive
            .symbols()
            .unwrap()
            .unwrap()
            .map(|s| String::from_utf8_lossy(s.unwrap().name()).into_owned())
            .collect();
        for name in [
            "UuidCreate",
            "__imp_UuidCreate",
            "__IMPORT_DESCRIPTOR_RPCRT4",
        ] {
            assert!(
                symbols.iter().any(|s| s == name),
                "{name} not in {symbols:?}"
            );
        }
        assert!(vmballoon_import_lib::from_def("LIBRARY RPCRT4.dll\n").is_err());
    }
}

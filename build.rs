//! Build script: configures the WDK link step when building on a Windows host for a
//! Windows target; does nothing anywhere else (the WDK does not exist on Linux).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The `cfg(windows)` here is the *host* (the machine running this script); it matches the
    // `[target.'cfg(windows)'.build-dependencies]` table, which Cargo also evaluates for the host.
    #[cfg(windows)]
    {
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
            wdk_build::configure_wdk_binary_build()?;
            rpcrt4()?;
        }
    }
    Ok(())
}

/// The link's `rpcrt4.lib`, made from `xtask/link/rpcrt4.def` exactly as the Linux link
/// (`cargo xtask build-sys`) makes its own: an import library of RPCRT4.dll's `UuidCreate`.
///
/// The `tracelogging` crate declares `UuidCreate` with `#[link(name = "rpcrt4")]`, so rustc
/// puts `rpcrt4.lib` on the driver's link line although the driver never calls it
/// (`xtask/link/README.md`, "rpcrt4"). `link.exe` searches `/LIBPATH` directories before the
/// `LIB` environment variable (Microsoft Learn, "/LIBPATH"), so with this directory on the
/// search path the link finds this library first and never needs the SDK's user-mode one on
/// `LIB`. Nothing is resolved from it: an image that imported from RPCRT4.dll fails the
/// Windows lane's import check, as it fails `build-sys`'s.
#[cfg(windows)]
fn rpcrt4() -> Result<(), Box<dyn std::error::Error>> {
    use std::path::PathBuf;

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let def = root.join("xtask/link/rpcrt4.def");
    println!("cargo::rerun-if-changed={}", def.display());
    let dir = PathBuf::from(std::env::var("OUT_DIR")?).join("rpcrt4");
    std::fs::create_dir_all(&dir)?;
    let lib = vmballoon_import_lib::from_def(&std::fs::read_to_string(&def)?)?;
    std::fs::write(dir.join("rpcrt4.lib"), lib)?;
    println!("cargo::rustc-link-search=native={}", dir.display());
    Ok(())
}

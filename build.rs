//! Build script: configures the WDK link step when building on a Windows host for a
//! Windows target; does nothing anywhere else (the WDK does not exist on Linux).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The `cfg(windows)` here is the *host* (the machine running this script); it matches the
    // `[target.'cfg(windows)'.build-dependencies]` table, which Cargo also evaluates for the host.
    #[cfg(windows)]
    {
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
            wdk_build::configure_wdk_binary_build()?;
        }
    }
    Ok(())
}

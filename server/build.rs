//! Links libstdc++ (RocksDB's C++ runtime) statically into the server's binaries, so the release
//! tarball needs no `LD_LIBRARY_PATH` and `ldd` shows only libc-level libraries.
//!
//! RocksDB's build asks for `-lstdc++`; a linker script named `libstdc++.so` in a directory
//! searched first turns that into the static archive. Without a `libstdc++.a` (another
//! toolchain), nothing changes and the link stays dynamic.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let cxx = std::env::var("CXX")
        .ok()
        .and_then(|c| c.split_whitespace().last().map(str::to_owned))
        .unwrap_or_else(|| "g++".into());
    let Ok(out) = Command::new(&cxx)
        .arg("-print-file-name=libstdc++.a")
        .output()
    else {
        return;
    };
    let archive = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !archive.is_absolute() || !archive.exists() {
        return;
    }
    let dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("static-stdcxx");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-stdcxx");
    std::fs::write(
        dir.join("libstdc++.so"),
        format!("INPUT({})\n", archive.display()),
    )
    .expect("write linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

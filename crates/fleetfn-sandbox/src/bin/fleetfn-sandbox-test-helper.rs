//! Test entry point for the helper (the `fleetfn` binary's `jail` subcommand does the same).
//!
//! - no arguments: read a `SandboxSpec` as JSON on stdin and run `jail_main`;
//! - `jail [--spec-file F]`: the `fleetfn jail` command line, so tests of other crates can use
//!   this binary where the agent would run `fleetfn`;
//! - `alloc <MiB>`: allocate and touch that much memory, print `allocated`, exit 0 (a memory
//!   hog the privileged tests bind into the sandbox);
//! - `hold <MiB>`: the same, then keep the memory until killed.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => fleetfn_sandbox::jail_main_from(None),
        [cmd] if cmd == "jail" => fleetfn_sandbox::jail_main_from(None),
        [cmd, flag, file] if cmd == "jail" && flag == "--spec-file" => {
            fleetfn_sandbox::jail_main_from(Some(Path::new(file)))
        }
        [cmd, mib] if cmd == "alloc" || cmd == "hold" => {
            let mib: usize = mib.parse().expect("alloc|hold <MiB>");
            let mut chunks = Vec::with_capacity(mib);
            for _ in 0..mib {
                // Non-zero bytes so every page is really touched.
                chunks.push(vec![1u8; 1 << 20]);
            }
            println!("allocated {}", chunks.len());
            if cmd == "hold" {
                loop {
                    std::hint::black_box(&chunks);
                    std::thread::park();
                }
            }
        }
        _ => {
            eprintln!(
                "usage: fleetfn-sandbox-test-helper [jail [--spec-file F] | alloc <MiB> | hold <MiB>] < spec.json"
            );
            std::process::exit(2);
        }
    }
}

//! Test entry point for the helper (the `fleetfn` binary's `jail` subcommand does the same).
//!
//! - no arguments: read a `SandboxSpec` as JSON on stdin and run `jail_main`;
//! - `alloc <MiB>`: allocate and touch that much memory, print `allocated`, exit 0 (a memory
//!   hog the privileged tests bind into the sandbox).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => fleetfn_sandbox::jail_main_from(None),
        [cmd, mib] if cmd == "alloc" => {
            let mib: usize = mib.parse().expect("alloc <MiB>");
            let mut chunks = Vec::with_capacity(mib);
            for _ in 0..mib {
                // Non-zero bytes so every page is really touched.
                chunks.push(vec![1u8; 1 << 20]);
            }
            println!("allocated {}", chunks.len());
        }
        _ => {
            eprintln!("usage: fleetfn-sandbox-test-helper [alloc <MiB>] < spec.json");
            std::process::exit(2);
        }
    }
}

//! The fake Anthropic API of the test suite as a program, for `make demo` and for
//! recapturing fixtures: `cargo run --example fake_api -- --port 0 --port-file PATH`.
//! Prints its URL, writes it to PATH if given, and serves until killed. Control it
//! with `POST /_control/...` (see tests/kit/src/fake_api.rs, the test kit's).

use kit::fake_api;

use std::io::Write;

fn main() {
    let mut port: u16 = 0;
    let mut port_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(p) => port = p,
                None => fail("--port needs a number (0 lets the system pick)"),
            },
            "--port-file" => match args.next() {
                Some(p) => port_file = Some(p),
                None => fail("--port-file needs a path"),
            },
            "-h" | "--help" => {
                println!("usage: fake_api [--port N] [--port-file PATH]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let api = fake_api::FakeApi::start_on(port).unwrap_or_else(|e| fail(&e));
    let url = api.url();
    if let Some(path) = port_file {
        // Written whole then renamed, so a reader polling for it never sees half a URL.
        let tmp = format!("{path}.tmp");
        if let Err(e) = std::fs::write(&tmp, format!("{url}\n")).and_then(|_| std::fs::rename(&tmp, &path)) {
            fail(&format!("cannot write the port file {path}: {e}"));
        }
    }
    println!("{url}");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("fake_api: {message}");
    std::process::exit(2);
}

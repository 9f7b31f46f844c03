//! Times reading a journal into recipient states, as `status`, `send` and `retry` do
//! (used by bench/status.sh): `cargo run --release --example journal_read -- PATH`.

/// As in the binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: journal_read JOURNAL");
        return std::process::ExitCode::from(2);
    };
    let start = std::time::Instant::now();
    match utskick::journal::Journal::read(std::path::Path::new(&path)) {
        Ok(j) => {
            println!(
                "{} events, {} recipients, {} runs read in {:.3} s",
                j.events,
                j.recipients.len(),
                j.runs.len(),
                start.elapsed().as_secs_f64()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

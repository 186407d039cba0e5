//! Storing a run's log: the gzip stream every finish writes per log file, for the few
//! kilobytes of a typical log and for a larger one.

// criterion_group! defines the bench functions without doc comments.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use janitor_runner::storage::gzip::gzip;
use std::hint::black_box;

/// Build-log-like text: numbered lines with some repetition, as worker logs are.
fn log_text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut line = 0_u32;
    while out.len() < len {
        line += 1;
        let text = match line % 4 {
            0 => format!("dpkg-buildpackage: info: source package alpha-{line}\n"),
            1 => format!("   dh_auto_build -O--buildsystem=pybuild (step {line})\n"),
            2 => format!(
                "I: pybuild base:311: python3.11 setup.py build {}\n",
                line * 7919
            ),
            _ => format!("running build_py copying alpha/module_{line}.py -> build/lib\n"),
        };
        out.extend_from_slice(text.as_bytes());
    }
    out.truncate(len);
    out
}

fn bench_gzip(c: &mut Criterion) {
    let mut group = c.benchmark_group("gzip_log");
    for len in [4 * 1024, 256 * 1024] {
        let input = log_text(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &input, |b, input| {
            let mut output = Vec::with_capacity(len);
            b.iter(|| {
                output.clear();
                gzip(&mut black_box(input.as_slice()), &mut output, 1_700_000_000)
                    .expect("gzip into memory");
                black_box(output.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_gzip);
criterion_main!(benches);

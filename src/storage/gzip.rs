//! Gzip with the deflate state and buffers kept per thread and reset between files.
//!
//! A deflate state is hundreds of KiB of tables that `flate2::GzEncoder` allocates and zeroes
//! for every file: for the few kilobytes of a typical run log that was most of the cost of
//! storing it (docs/performance.md). flate2 runs on zlib-rs, whose reset clears only the hash
//! heads (miniz_oxide's zeroed every table). The stream is the one `GzEncoder` writes: the same
//! header (MTIME as given, XFL 0 for the default level, OS 255), deflate at the default level,
//! CRC-32 and size.

use std::cell::RefCell;
use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

const CHUNK: usize = 32 * 1024;

/// What compressing a file needs, kept per thread: the deflate state, the buffer the input is
/// read into, and the one the output gathers in before it is written.
struct Gzipper {
    deflate: Compress,
    read_buffer: Vec<u8>,
    compressed: Vec<u8>,
}

thread_local! {
    static GZIPPER: RefCell<Option<Gzipper>> = const { RefCell::new(None) };
}

/// Writes `input` gzip-compressed to `output`, with `mtime` in the header.
pub fn gzip(input: &mut dyn Read, output: &mut dyn Write, mtime: u32) -> io::Result<()> {
    GZIPPER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let gzipper = slot.get_or_insert_with(|| Gzipper {
            deflate: Compress::new(Compression::default(), false),
            read_buffer: vec![0; CHUNK],
            compressed: Vec::with_capacity(CHUNK * 2),
        });
        gzipper.deflate.reset();
        let written = write_stream(gzipper, input, output, mtime);
        if written.is_err() {
            // Reset would do; dropping the state keeps a failure from leaking into the next file.
            *slot = None;
        }
        written
    })
}

/// The stream goes out in as few writes as the output's size allows: a small log's header,
/// deflate data and trailer in one.
fn write_stream(
    gzipper: &mut Gzipper,
    input: &mut dyn Read,
    output: &mut dyn Write,
    mtime: u32,
) -> io::Result<()> {
    let Gzipper {
        deflate,
        read_buffer,
        compressed,
    } = gzipper;
    let [m0, m1, m2, m3] = mtime.to_le_bytes();
    compressed.clear();
    compressed.extend_from_slice(&[0x1f, 0x8b, 8, 0, m0, m1, m2, m3, 0, 255]);
    let mut crc = Crc::new();
    loop {
        let read = read_up_to(input, read_buffer)?;
        let data = &read_buffer[..read];
        crc.update(data);
        let last = read == 0;
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::None
        };
        let mut consumed = 0;
        loop {
            if compressed.capacity() - compressed.len() < CHUNK {
                output.write_all(compressed)?;
                compressed.clear();
            }
            let before = deflate.total_in();
            let status = deflate
                .compress_vec(&data[consumed..], compressed, flush)
                .map_err(io::Error::other)?;
            consumed += usize::try_from(deflate.total_in() - before).map_err(io::Error::other)?;
            let done = if last {
                status == Status::StreamEnd
            } else {
                consumed == data.len()
            };
            if done {
                break;
            }
        }
        if last {
            break;
        }
    }
    compressed.extend_from_slice(&crc.sum().to_le_bytes());
    compressed.extend_from_slice(&crc.amount().to_le_bytes());
    output.write_all(compressed)?;
    compressed.clear();
    Ok(())
}

/// Reads until `buffer` is full or the input ends.
fn read_up_to(input: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_and_keeps_the_header_gz_encoder_writes() {
        // Empty, small, and larger than a chunk with poorly compressible content; twice each,
        // so the second use of the thread's state is checked too.
        let mut state = 1_u32;
        let noisy: Vec<u8> = (0..CHUNK * 3 + 17)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect();
        for input in [Vec::new(), b"a log line\n".repeat(300), noisy] {
            for _ in 0..2 {
                let mut ours = Vec::new();
                gzip(&mut input.as_slice(), &mut ours, 1_700_000_000).unwrap();
                assert_eq!(gunzip(&ours), input);
                let mut theirs = flate2::GzBuilder::new()
                    .mtime(1_700_000_000)
                    .write(Vec::new(), Compression::default());
                theirs.write_all(&input).unwrap();
                let theirs = theirs.finish().unwrap();
                assert_eq!(ours[..10], theirs[..10], "header");
                assert_eq!(ours, theirs, "the whole stream");
            }
        }
    }
}

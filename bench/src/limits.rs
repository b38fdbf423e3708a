//! Machine limits measured in the same run as the brokers: loopback TCP throughput.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Bytes per second one TCP connection carries over loopback, writing 1 MiB buffers for
/// `duration` to a reader thread that discards them.
pub fn loopback_bytes_per_sec(duration: Duration) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buffer)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(address)?;
    let buffer = vec![0x5Au8; 1 << 20];
    let start = Instant::now();
    while start.elapsed() < duration {
        stream.write_all(&buffer)?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let received = reader
        .join()
        .map_err(|_| std::io::Error::other("loopback reader thread panicked"))??;
    Ok(received as f64 / start.elapsed().as_secs_f64())
}

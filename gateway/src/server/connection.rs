//! Size-prefixed Kafka frames over a byte stream.
//!
//! Each request frame is read into its own buffer of exactly its size, so the produce path can
//! own the record bytes uniquely and rewrite offsets in place without a copy. The length is
//! checked against `max_frame_bytes` before anything is allocated; the session reads the size
//! and the body separately ([`FrameReader::read_size`], [`FrameReader::read_body`]) to reserve
//! the body's bytes in the global memory budget in between.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

/// Failures of the framing layer. All of them close the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer declared a frame larger than allowed (or negative).
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared size.
        size: i64,
        /// Configured maximum.
        max: usize,
    },
    /// The peer declared a frame larger than the whole memory budget of all connections: it
    /// could never be admitted.
    #[error("frame of {size} bytes exceeds the memory budget of {budget} bytes for queued requests (--max-queued-request-bytes)")]
    OverBudget {
        /// Declared size.
        size: usize,
        /// The whole budget.
        budget: usize,
    },
    /// The peer closed the connection inside a frame.
    #[error("connection closed mid-frame")]
    Truncated,
    /// Socket error.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "frame_too_large",
            Self::OverBudget { .. } => "frame_over_budget",
            Self::Truncated => "truncated",
            Self::Io(_) => "io",
        }
    }
}

/// Reads whole frames.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: BufReader<R>,
    max_frame_bytes: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a read half.
    pub fn new(inner: R, max_frame_bytes: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max_frame_bytes,
        }
    }

    /// Reads the next frame body (without its size prefix). `Ok(None)` on a clean close between
    /// frames.
    ///
    /// # Errors
    /// [`FrameError`] on oversized frames, a close inside a frame, or socket errors.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        match self.read_size().await? {
            None => Ok(None),
            Some(size) => self.read_body(size).await.map(Some),
        }
    }

    /// Reads the next frame's size prefix, checked against the maximum. `Ok(None)` on a clean
    /// close between frames.
    ///
    /// # Errors
    /// [`FrameError`] on oversized frames, a close inside the prefix, or socket errors.
    pub async fn read_size(&mut self) -> Result<Option<usize>, FrameError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut len[got..]).await? {
                0 if got == 0 => return Ok(None),
                0 => return Err(FrameError::Truncated),
                n => got += n,
            }
        }
        let size = i32::from_be_bytes(len);
        if size < 0 || size as usize > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size: i64::from(size),
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(size as usize))
    }

    /// Reads a frame body of `size` bytes (as returned by [`Self::read_size`]) into a buffer of
    /// exactly that size.
    ///
    /// # Errors
    /// [`FrameError`] on a close inside the frame or socket errors.
    pub async fn read_body(&mut self, size: usize) -> Result<Bytes, FrameError> {
        debug_assert!(size <= self.max_frame_bytes);
        // Filled through `read_buf` so the buffer is never zeroed first.
        let mut buf = BytesMut::with_capacity(size);
        while buf.len() < size {
            let remaining = size - buf.len();
            let mut window = (&mut buf).limit(remaining);
            if self.inner.read_buf(&mut window).await? == 0 {
                return Err(FrameError::Truncated);
            }
        }
        Ok(buf.freeze())
    }
}

/// Writes whole frames, batching them until [`FrameWriter::flush`].
#[derive(Debug)]
pub struct FrameWriter<W: AsyncWrite> {
    inner: BufWriter<W>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a write half.
    pub fn new(inner: W) -> Self {
        Self {
            inner: BufWriter::with_capacity(64 * 1024, inner),
        }
    }

    /// Queues an encoded frame (size prefix included).
    ///
    /// # Errors
    /// Socket errors.
    pub async fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(frame).await
    }

    /// Sends everything queued.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_oversized_and_truncated() {
        let mut data = Vec::new();
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&0i32.to_be_bytes());
        let mut r = FrameReader::new(&data[..], 100);
        assert_eq!(r.read_frame().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(r.read_frame().await.unwrap().unwrap().len(), 0);
        assert!(r.read_frame().await.unwrap().is_none());

        let big = 1000i32.to_be_bytes();
        let mut r = FrameReader::new(&big[..], 100);
        assert!(matches!(
            r.read_frame().await,
            Err(FrameError::TooLarge { size: 1000, max: 100 })
        ));

        let neg = (-5i32).to_be_bytes();
        assert!(matches!(
            FrameReader::new(&neg[..], 100).read_frame().await,
            Err(FrameError::TooLarge { .. })
        ));

        let mut short = 10i32.to_be_bytes().to_vec();
        short.extend_from_slice(b"abc");
        assert!(matches!(
            FrameReader::new(&short[..], 100).read_frame().await,
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            FrameReader::new(&b"\x00\x00"[..], 100).read_frame().await,
            Err(FrameError::Truncated)
        ));
    }
}

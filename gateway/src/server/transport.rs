//! The byte streams a session runs over: plain TCP or TLS over TCP. Sessions are generic over
//! [`Transport`], so framing, pipelining and shutdown are written once for both.

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A connected stream a session can split into a reader task's half and its own write half.
pub trait Transport: Send + 'static {
    /// The read half.
    type Read: AsyncRead + Unpin + Send + 'static;
    /// The write half.
    type Write: AsyncWrite + Unpin + Send + 'static;

    /// Splits the stream.
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    /// TCP splits without a lock.
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Transport for TlsStream<TcpStream> {
    type Read = ReadHalf<Self>;
    type Write = WriteHalf<Self>;

    /// TLS state is shared by both directions: the halves share it under a lock.
    fn into_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

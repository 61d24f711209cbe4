//! The `Host` trait: what the executor needs from a host (run a script with its stdout lines
//! streamed, reach a port as the host sees it), so the executor runs unchanged against ssh,
//! a local directory, or a scripted fake in unit tests.

use std::net::SocketAddr;

use futures::future::LocalBoxFuture;

use crate::transport::{Connection, ScriptOutput, TransportError};

/// One host the executor talks to.
pub trait Host {
    /// The host's inventory name.
    fn name(&self) -> &str;

    /// Runs `script` with `sh -s` on the host, handing each stdout line to `on_line` as it
    /// arrives.
    fn run_streaming<'a>(
        &'a self,
        script: &'a str,
        on_line: &'a mut dyn FnMut(&str),
    ) -> LocalBoxFuture<'a, Result<ScriptOutput, TransportError>>;

    /// A local address that reaches `address:port` as the host sees it.
    fn forward<'a>(
        &'a self,
        address: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<SocketAddr, TransportError>>;

    /// Runs `script` and returns what it printed.
    fn run<'a>(
        &'a self,
        script: &'a str,
    ) -> LocalBoxFuture<'a, Result<ScriptOutput, TransportError>> {
        Box::pin(async move { self.run_streaming(script, &mut |_| {}).await })
    }
}

impl Host for Connection {
    fn name(&self) -> &str {
        self.host()
    }

    fn run_streaming<'a>(
        &'a self,
        script: &'a str,
        on_line: &'a mut dyn FnMut(&str),
    ) -> LocalBoxFuture<'a, Result<ScriptOutput, TransportError>> {
        Box::pin(Connection::run_streaming(self, script, on_line))
    }

    fn forward<'a>(
        &'a self,
        address: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<SocketAddr, TransportError>> {
        Box::pin(Connection::forward(self, address, port))
    }
}

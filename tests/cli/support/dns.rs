//! A DNS server on loopback for the tests: hickory-server in the test process, answering
//! UDP and TCP on one port from a zone written in the master-file format every DNS host
//! takes (RFC 1035 section 5). Names the zone lacks are answered NXDOMAIN, as a real
//! authoritative server does: that is what a missing DMARC or DKIM record looks like.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// A running server; stopped when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A TXT record's data as the master file writes it: strings of at most 255 bytes each
/// (a 2048-bit DKIM key needs two), quoted.
pub fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

impl DnsServer {
    /// Serves `records` (master-file lines, names relative to `origin`) for the zone
    /// `origin`, with the SOA and NS records a zone needs added.
    pub fn start(origin: &str, records: &str) -> DnsServer {
        let zone = format!(
            "$ORIGIN {origin}.\n$TTL 60\n@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60\n@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n{records}\n"
        );
        let origin_name = Name::from_ascii(format!("{origin}.")).expect("origin name");
        let (_, rrsets) = Parser::new(zone.clone(), None, Some(origin_name.clone()))
            .parse()
            .unwrap_or_else(|e| panic!("zone does not parse: {e}\n{zone}"));
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            origin_name.clone(),
            rrsets,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .expect("zone loads");
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin_name), vec![Arc::new(handler)]);

        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut server = Server::new(catalog);
                // UDP and TCP on the same port: bind UDP to a free one, then TCP to it,
                // and try again when another process has the TCP port.
                let mut bound = None;
                for _ in 0..50 {
                    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                        .await
                        .expect("bind udp");
                    let addr = udp.local_addr().expect("udp addr");
                    if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                        bound = Some((udp, tcp, addr));
                        break;
                    }
                }
                let (udp, tcp, addr) = bound.expect("a free port for UDP and TCP");
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 65_535);
                addr_tx.send(addr).expect("report address");
                let _ = stop_rx.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("DNS server started");
        DnsServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

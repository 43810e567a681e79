//! A network namespace per environment, and the host firewall that keeps environments apart.
//!
//! [`EnvNetwork::create`] makes a new network namespace on a short-lived thread of the agent
//! (network namespaces are per thread, so the agent itself never leaves its own), brings its
//! loopback up and binds the environment's Runtime API listener *inside* it at
//! `127.0.0.1:9001`, the address AWS gives runtimes. The listener keeps working from the agent's
//! other threads, but nothing outside the namespace can connect to it: not the host, not
//! another environment. With egress on, a veth pair joins the namespace (`eth0`, the slot's
//! `/30`) to the agent's namespace (`fe<slot>`, interface group [`ENV_GROUP`]); the host
//! forwards and masquerades its traffic out, and [`firewall_ruleset`] refuses (a TCP reset, or
//! ICMP administratively prohibited, so a connect fails at once) everything an
//! environment sends to the host itself (its loopback services, the agents, the API, metrics),
//! to other environments, to link-local addresses (the instance metadata service at
//! 169.254.169.254) and over IPv6, unless an operator allows a destination.
//!
//! [`connect_in`] makes TCP connections the other way, from the agent to a listener of the
//! environment's (a Telemetry API subscriber at `sandbox.localdomain:<port>`), on a
//! short-lived thread that joins the namespace; only the namespace's loopback is reachable.
//!
//! The namespace dies with the last of: its runtime processes, the fd [`EnvNetwork`] holds, the
//! listener. The veth pair goes with it.

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

/// How long [`connect_in`] waits for a connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Interface group of the host ends of environment veths ("FL").
pub const ENV_GROUP: u32 = 0x464c;
/// The Runtime API port inside every environment (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001`).
pub const RUNTIME_API_PORT: u16 = 9001;
/// Environment addresses: one `/30` per slot out of 198.18.0.0/16 (RFC 2544 benchmarking
/// space, which no real network uses).
pub const POOL: Ipv4Cidr = Ipv4Cidr {
    addr: Ipv4Addr::new(198, 18, 0, 0),
    prefix: 16,
};
/// The nftables table fleetfn owns.
pub const NFT_TABLE: &str = "fleetfn";

/// Environment slots the pool has room for.
pub const fn slot_count() -> u32 {
    1 << (32 - POOL.prefix - 2)
}

/// A failure to build an environment's network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{step}: {error}")]
    Io {
        step: &'static str,
        error: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("slot {0} is outside the address pool")]
    Slot(u32),
}

fn io_step(step: &'static str) -> impl FnOnce(std::io::Error) -> NetError {
    move |error| NetError::Io { step, error }
}

/// An IPv4 network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    /// `a.b.c.d/n`, or a bare address (`/32`). Host bits must be zero.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address or CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if u32::from(addr) & !mask != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(Self { addr, prefix })
    }
}

/// The host end and the environment end of `slot`'s `/30`.
pub fn slot_addrs(slot: u32) -> Result<(Ipv4Addr, Ipv4Addr), NetError> {
    if slot >= slot_count() {
        return Err(NetError::Slot(slot));
    }
    let base = u32::from(POOL.addr) + slot * 4;
    Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)))
}

/// The host-side interface name of `slot`.
pub fn host_ifname(slot: u32) -> String {
    format!("fe{slot}")
}

/// What the host lets environments do on the network, probed once at agent start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetIsolation {
    /// No network namespaces (not root): environments share the agent's network.
    Shared(String),
    /// Own namespace, loopback only: no egress (`ip` or `nft` missing, or egress turned off).
    NoEgress(String),
    /// Own namespace with egress through the host's firewall.
    Egress,
}

impl NetIsolation {
    /// Whether environments get their own namespace.
    pub fn has_namespace(&self) -> bool {
        !matches!(self, Self::Shared(_))
    }
}

impl fmt::Display for NetIsolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared(why) => write!(
                f,
                "network: NOT isolated ({why}): environments share the host's network and can reach each other's Runtime API"
            ),
            Self::NoEgress(why) => write!(
                f,
                "network: own namespace per environment, loopback only ({why})"
            ),
            Self::Egress => f.write_str(
                "network: own namespace per environment, egress through nftables (host, other environments and 169.254.0.0/16 blocked)",
            ),
        }
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Probes what the host allows: a namespace needs root; egress needs `ip` and `nft`.
pub fn probe(root: bool, egress_wanted: bool) -> NetIsolation {
    if !root {
        return NetIsolation::Shared("the agent is not root".into());
    }
    if let Err(e) = std::thread::spawn(|| nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET))
        .join()
        .unwrap_or(Err(nix::errno::Errno::EIO))
    {
        return NetIsolation::Shared(format!("cannot create a network namespace: {e}"));
    }
    if !egress_wanted {
        return NetIsolation::NoEgress("egress turned off".into());
    }
    match (find_program("ip"), find_program("nft")) {
        (Some(_), Some(_)) => NetIsolation::Egress,
        (None, _) => NetIsolation::NoEgress("no `ip` (iproute2) on the host".into()),
        (_, None) => NetIsolation::NoEgress("no `nft` (nftables) on the host".into()),
    }
}

/// The nftables ruleset (one atomic `nft -f` transaction that replaces the table) for the
/// environments' traffic. `allow` lists destinations environments may reach even though they
/// would be blocked (e.g. `169.254.169.254/32` for a real metadata service).
pub fn firewall_ruleset(allow: &[Ipv4Cidr]) -> String {
    let g = ENV_GROUP;
    let mut forward = vec![
        "type filter hook forward priority -10; policy accept;".to_owned(),
        format!("iifgroup {g} oifgroup {g} goto refuse"),
        format!("iifgroup {g} meta nfproto ipv6 goto refuse"),
    ];
    if !allow.is_empty() {
        let list: Vec<String> = allow.iter().map(ToString::to_string).collect();
        forward.push(format!(
            "iifgroup {g} ip daddr {{ {} }} accept",
            list.join(", ")
        ));
    }
    forward.extend([
        format!(
            "iifgroup {g} ip daddr {{ 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3 }} goto refuse"
        ),
        format!("iifgroup {g} accept"),
        format!("oifgroup {g} ct state established,related accept"),
        format!("oifgroup {g} drop"),
    ]);
    let chain = |name: &str, rules: &[String]| {
        let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
        format!("  chain {name} {{\n{body}  }}\n")
    };
    [
        format!("table inet {NFT_TABLE} {{}}\n"),
        format!("delete table inet {NFT_TABLE}\n"),
        format!("table inet {NFT_TABLE} {{\n"),
        // TCP gets a reset, the rest ICMP "administratively prohibited": a refused connect
        // fails at once (ICMP alone is rate-limited per peer, so a scan would hang on it).
        chain(
            "refuse",
            &[
                "meta l4proto tcp reject with tcp reset".to_owned(),
                "reject with icmpx type admin-prohibited".to_owned(),
            ],
        ),
        chain(
            "input",
            &[
                "type filter hook input priority -10; policy accept;".to_owned(),
                format!("iifgroup {g} goto refuse"),
            ],
        ),
        chain("forward", &forward),
        chain(
            "postrouting",
            &[
                "type nat hook postrouting priority 100; policy accept;".to_owned(),
                format!("ip saddr {POOL} oifgroup != {g} masquerade"),
            ],
        ),
        "}\n".to_owned(),
    ]
    .concat()
}

fn run_batch(program: &str, args: &[&str], input: &str) -> Result<(), NetError> {
    let path = find_program(program).ok_or_else(|| NetError::Command {
        command: program.into(),
        stderr: "not installed".into(),
    })?;
    let mut child = Command::new(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_step("spawn"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(io_step("write"))?;
    }
    let out = child.wait_with_output().map_err(io_step("wait"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Installs (or replaces) the firewall table and turns on IPv4 forwarding. Idempotent; every
/// agent on the host installs the same table.
pub fn install_firewall(allow: &[Ipv4Cidr]) -> Result<(), NetError> {
    run_batch("nft", &["-f", "-"], &firewall_ruleset(allow))?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(io_step("ip_forward"))
}

/// A TCP connection to `addr` made inside the network namespace `netns` (e.g.
/// [`EnvNetwork::ns_fd`]): a short-lived thread joins the namespace, connects (waiting at most
/// [`CONNECT_TIMEOUT`]) and hands the stream back; the socket stays in that namespace for its
/// whole life, whichever thread uses it. The stream is in blocking mode (set it nonblocking for
/// an async runtime). Only loopback addresses (`127.0.0.0/8`, `::1`) are accepted: the agent
/// reaches into an environment, never through it. Needs `CAP_SYS_ADMIN` (the agent is root
/// when environments have namespaces).
pub fn connect_in(netns: impl AsFd, addr: SocketAddr) -> std::io::Result<TcpStream> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{addr} is not a loopback address: connections into an environment reach only its loopback (127.0.0.0/8, ::1)"
            ),
        ));
    }
    let netns = netns.as_fd();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("netns-connect".into())
            .spawn_scoped(scope, move || {
                nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            })?
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
    })
}

/// Sets `IFF_UP` on `lo` of the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct; all-zero is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, a live local.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags; setting a bit keeps it valid.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel (`NETLINK_SOCK_DIAG`, one exact 4-tuple lookup) which uid owns a TCP
/// socket, in the network namespace the netlink socket was opened in. Unlike reading
/// `/proc/net/tcp`, which walks the whole (host-wide) established hash — milliseconds on a
/// large host — this is one round trip of a few microseconds.
#[derive(Debug)]
pub struct SockDiag {
    fd: std::sync::Mutex<OwnedFd>,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// `sizeof(struct nlmsghdr) + sizeof(struct inet_diag_req_v2)`.
const DIAG_REQUEST_LEN: usize = 16 + 56;
/// Offset of `idiag_uid` in a reply: `nlmsghdr` + family/state/timer/retrans + sockid +
/// expires/rqueue/wqueue.
const DIAG_UID_OFFSET: usize = 16 + 4 + 48 + 12;

impl SockDiag {
    /// A diag socket in the calling thread's network namespace.
    pub fn open() -> std::io::Result<Self> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        Ok(Self {
            fd: std::sync::Mutex::new(fd),
        })
    }

    /// The request for the TCP socket whose own end is `local` and whose peer is `remote`.
    fn request(local: SocketAddrV4, remote: SocketAddrV4) -> [u8; DIAG_REQUEST_LEN] {
        let mut r = [0u8; DIAG_REQUEST_LEN];
        r[0..4].copy_from_slice(&(DIAG_REQUEST_LEN as u32).to_ne_bytes());
        r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        r[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        // inet_diag_req_v2: family, protocol, ext, pad, states (all).
        r[16] = libc::AF_INET as u8;
        r[17] = libc::IPPROTO_TCP as u8;
        r[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        // inet_diag_sockid: ports and addresses in network order, interface 0, no cookie.
        r[24..26].copy_from_slice(&local.port().to_be_bytes());
        r[26..28].copy_from_slice(&remote.port().to_be_bytes());
        r[28..32].copy_from_slice(&local.ip().octets());
        r[44..48].copy_from_slice(&remote.ip().octets());
        r[64..72].copy_from_slice(&[0xff; 8]);
        r
    }

    /// The owner's uid of the TCP socket `local` → `remote`, `None` when there is none.
    pub fn tcp_uid(
        &self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> std::io::Result<Option<u32>> {
        use nix::sys::socket::{MsgFlags, NetlinkAddr, recv, sendto};
        let fd = self
            .fd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sendto(
            fd.as_raw_fd(),
            &Self::request(local, remote),
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut buf = [0u8; 1024];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        Ok(parse_diag_reply(&buf[..n]))
    }
}

/// The uid in a `SOCK_DIAG_BY_FAMILY` reply; `None` for an error reply (no such socket).
fn parse_diag_reply(reply: &[u8]) -> Option<u32> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind == NLMSG_ERROR || kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let uid = reply.get(DIAG_UID_OFFSET..DIAG_UID_OFFSET + 4)?;
    Some(u32::from_ne_bytes(uid.try_into().ok()?))
}

/// One environment's network namespace.
#[derive(Debug)]
pub struct EnvNetwork {
    ns: OwnedFd,
    listener: Option<TcpListener>,
    diag: std::sync::Arc<SockDiag>,
    slot: u32,
    egress: bool,
}

impl EnvNetwork {
    /// Creates the namespace of environment `slot` with its Runtime API listener bound at
    /// `127.0.0.1:9001` inside, and with `egress` a veth pair to the agent's namespace
    /// (the firewall must be installed for that traffic to leave the host).
    pub fn create(slot: u32, egress: bool) -> Result<Self, NetError> {
        let (host_addr, env_addr) = slot_addrs(slot)?;
        let host_if = host_ifname(slot);
        let agent_pid = std::process::id();
        if egress && Path::new("/sys/class/net").join(&host_if).exists() {
            // Left by an environment whose namespace still lingers; its slot lease is gone.
            run_batch("ip", &["link", "del", &host_if], "")?;
        }
        type Inside = (OwnedFd, TcpListener, SockDiag);
        let inside = std::thread::spawn(move || -> Result<Inside, NetError> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_step("unshare network namespace")(e.into()))?;
            let ns = std::fs::File::open("/proc/thread-self/ns/net")
                .map_err(io_step("open network namespace"))?;
            loopback_up().map_err(io_step("loopback up"))?;
            let listener =
                TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, RUNTIME_API_PORT))
                    .map_err(io_step("bind the Runtime API"))?;
            if egress {
                // Runs in this thread's (the environment's) namespace; the peer end is created
                // in the agent's, named by the agent's pid.
                run_batch(
                    "ip",
                    &["-batch", "-"],
                    &format!(
                        "link add eth0 type veth peer name {host_if} netns {agent_pid}\n\
                         addr add {env_addr}/30 dev eth0\n\
                         link set eth0 up\n\
                         route add default via {host_addr}\n"
                    ),
                )?;
            }
            let diag = SockDiag::open().map_err(io_step("open sock_diag"))?;
            Ok((ns.into(), listener, diag))
        })
        .join()
        .map_err(|_| NetError::Command {
            command: "network namespace thread".into(),
            stderr: "panicked".into(),
        })?;
        let (ns, listener, diag) = inside?;
        if egress {
            let host_if = host_ifname(slot);
            run_batch(
                "ip",
                &["-batch", "-"],
                &format!(
                    "link set {host_if} group {ENV_GROUP}\n\
                     addr add {host_addr}/30 dev {host_if}\n\
                     link set {host_if} up\n"
                ),
            )?;
        }
        Ok(Self {
            ns,
            listener: Some(listener),
            diag: std::sync::Arc::new(diag),
            slot,
            egress,
        })
    }

    /// The Runtime API listener (blocking mode; once).
    pub fn take_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// A path that names the namespace for as long as this value lives (what the helper's
    /// `netns` field takes).
    pub fn ns_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ))
    }

    /// The namespace, for [`connect_in`] (`try_clone_to_owned` gives a handle that keeps the
    /// namespace alive on its own).
    pub fn ns_fd(&self) -> BorrowedFd<'_> {
        self.ns.as_fd()
    }

    /// [`connect_in`] this environment's namespace.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        connect_in(self.ns_fd(), addr)
    }

    /// Socket owner lookups inside the namespace (for the Runtime API's peer check).
    pub fn sock_diag(&self) -> std::sync::Arc<SockDiag> {
        std::sync::Arc::clone(&self.diag)
    }

    /// The environment's slot.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The environment's own address, when it has egress.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.egress
            .then(|| slot_addrs(self.slot).ok().map(|a| a.1))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_disjoint_blocks_inside_the_pool() {
        assert_eq!(slot_count(), 16_384);
        assert_eq!(
            slot_addrs(0).unwrap(),
            (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(
            slot_addrs(16_383).unwrap(),
            (
                Ipv4Addr::new(198, 18, 255, 253),
                Ipv4Addr::new(198, 18, 255, 254)
            )
        );
        assert!(matches!(slot_addrs(16_384), Err(NetError::Slot(16_384))));
        assert_eq!(host_ifname(12), "fe12");
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!(
            "169.254.169.254".parse::<Ipv4Cidr>().unwrap().to_string(),
            "169.254.169.254/32"
        );
        assert_eq!("10.0.0.0/8".parse::<Ipv4Cidr>().unwrap().prefix, 8);
        assert!(
            "10.0.0.1/8"
                .parse::<Ipv4Cidr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("nope".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn ruleset_blocks_the_host_other_environments_and_metadata() {
        let rules = firewall_ruleset(&[]);
        assert!(
            rules.contains("    iifgroup 17996 goto refuse\n"),
            "{rules}"
        );
        assert!(rules.contains("iifgroup 17996 oifgroup 17996 goto refuse"));
        assert!(rules.contains("meta l4proto tcp reject with tcp reset"));
        assert!(rules.contains("169.254.0.0/16"));
        assert!(rules.contains("ip saddr 198.18.0.0/16 oifgroup != 17996 masquerade"));
        assert!(!rules.contains("accept\n    iifgroup 17996 ip daddr {"));
        let allowed = firewall_ruleset(&["169.254.169.254/32".parse().unwrap()]);
        let allow = allowed
            .find("ip daddr { 169.254.169.254/32 } accept")
            .expect("allow rule");
        let block = allowed.find("169.254.0.0/16").unwrap();
        assert!(allow < block, "the allow rule comes before the block");
    }

    #[test]
    fn diag_requests_name_the_exact_socket() {
        let local = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 0xD431);
        let remote = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 9001);
        let r = SockDiag::request(local, remote);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(&r[24..28], &[0xD4, 0x31, 0x23, 0x29]);
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[44..48], &[127, 0, 0, 2]);
        assert_eq!(&r[64..72], &[0xff; 8]);
        let mut reply = vec![0u8; DIAG_UID_OFFSET + 8];
        reply[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        reply[DIAG_UID_OFFSET..DIAG_UID_OFFSET + 4].copy_from_slice(&20_007u32.to_ne_bytes());
        assert_eq!(parse_diag_reply(&reply), Some(20_007));
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_diag_reply(&reply), None);
        assert_eq!(parse_diag_reply(&[0u8; 3]), None);
    }

    #[test]
    fn connect_in_refuses_anything_but_loopback() {
        // Refused before any namespace is touched, so this needs no privilege.
        let me = std::fs::File::open("/proc/self/ns/net").unwrap();
        for addr in [
            "198.18.0.2:8080",
            "10.0.0.1:80",
            "[::ffff:127.0.0.1]:80",
            "[fe80::1]:1",
        ] {
            let err = connect_in(&me, addr.parse().unwrap()).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{addr}");
            assert!(err.to_string().contains("not a loopback address"), "{err}");
        }
    }

    #[test]
    fn diag_finds_the_owner_of_a_live_socket() {
        // Needs nothing but a netlink socket: the test's own loopback connection.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (std::net::SocketAddr::V4(c), std::net::SocketAddr::V4(l)) =
            (client.local_addr().unwrap(), listener.local_addr().unwrap())
        else {
            panic!("IPv4 expected");
        };
        let diag = SockDiag::open().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(diag.tcp_uid(c, l).unwrap(), Some(me));
        let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(diag.tcp_uid(nobody, l).unwrap(), None);
    }
}

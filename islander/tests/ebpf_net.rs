//! Network bytes and packets are counted on the sockets of a registered
//! cgroup, in both directions. Needs root.

mod ebpf_support;

use ebpf_support::{observer, run_in, Ended, TestCgroup};

const MIB: u64 = 1 << 20;
const SEND: usize = 10 << 20;
const CHUNK: usize = 64 << 10;

/// Sends SEND bytes over a loopback TCP connection whose two ends both live
/// in this process, then returns 0 (or the step that failed). Raw syscalls
/// only: it runs in a forked child.
fn loopback_transfer(buffer: *mut u8) -> i32 {
    // SAFETY: plain socket calls on fds this function owns, with buffers
    // and address structs that outlive the calls.
    unsafe {
        let listener = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if listener < 0 {
            return 10;
        }
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sockaddr = (&raw mut addr).cast::<libc::sockaddr>();
        if libc::bind(listener, sockaddr, len) != 0 || libc::listen(listener, 1) != 0 {
            return 11;
        }
        let mut bound_len = len;
        if libc::getsockname(listener, sockaddr, &mut bound_len) != 0 {
            return 12;
        }
        let sender = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if sender < 0 || libc::connect(sender, sockaddr, len) != 0 {
            return 13;
        }
        let receiver = libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut());
        if receiver < 0 {
            return 14;
        }
        // Send and receive in turns so neither socket buffer fills up.
        let (mut sent, mut received) = (0usize, 0usize);
        while received < SEND {
            if sent < SEND {
                let n = libc::send(
                    sender,
                    buffer.cast(),
                    CHUNK.min(SEND - sent),
                    libc::MSG_DONTWAIT,
                );
                if n > 0 {
                    sent += n as usize;
                } else if n < 0 && *libc::__errno_location() != libc::EAGAIN {
                    return 15;
                }
            }
            let n = libc::recv(receiver, buffer.cast(), CHUNK, libc::MSG_DONTWAIT);
            if n > 0 {
                received += n as usize;
            } else if n == 0 || *libc::__errno_location() != libc::EAGAIN {
                return 16;
            }
        }
        libc::close(sender);
        libc::close(receiver);
        libc::close(listener);
    }
    0
}

#[test]
fn counts_a_loopback_transfer_both_ways() {
    let observer = observer();
    let cgroup = TestCgroup::unified("net");
    let quiet = TestCgroup::unified("net-quiet");
    observer
        .register(cgroup.id())
        .unwrap_or_else(|err| panic!("{err}"));
    observer
        .register(quiet.id())
        .unwrap_or_else(|err| panic!("{err}"));

    let mut buffer = vec![0x42u8; CHUNK];
    let ptr = buffer.as_mut_ptr();
    assert_eq!(
        run_in(&[&cgroup], || loopback_transfer(ptr)),
        Ended::Exited(0)
    );
    // The same transfer outside any isle.
    assert_eq!(loopback_transfer(ptr), 0);

    let net = observer.isle(cgroup.id()).unwrap().net;
    eprintln!("counted: {net:?}");
    let sent = SEND as u64;
    assert!(
        net.tx_bytes >= sent,
        "transmitted {} bytes, sent {sent}",
        net.tx_bytes
    );
    assert!(
        net.rx_bytes >= sent,
        "received {} bytes, sent {sent}",
        net.rx_bytes
    );
    // Headers and ACKs add a little, not another copy.
    assert!(net.tx_bytes < sent + 2 * MIB, "{net:?}");
    assert!(net.tx_packets > 0 && net.rx_packets > 0, "{net:?}");
    let quiet_net = observer.isle(quiet.id()).unwrap().net;
    assert_eq!(quiet_net.tx_bytes + quiet_net.rx_bytes, 0, "{quiet_net:?}");

    observer.forget(cgroup.id());
    observer.forget(quiet.id());
}

//! The typed messages islander and an isle's init exchange over their
//! socketpair while the isle is set up. A `SOCK_SEQPACKET` pair keeps message
//! boundaries, so each message is one JSON datagram; a descriptor (the pty
//! master) travels beside its message as `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use super::{ProcessError, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Message {
    /// Parent to init: id maps written; build the isle.
    Go,
    /// Parent to init: cgroups joined; exec when ready.
    Joined,
    /// Parent to init: the image as a detached, idmapped mount (`--userns`)
    /// rides along, to be the overlay's lower layer.
    IdmappedLower,
    /// Init to parent: the pty master of the isle's terminal rides along.
    PtyMaster,
    /// `islander exec`'s intermediate to islander: the pid of the process it
    /// forked into the isle's PID namespace.
    ExecPid { pid: i32 },
    /// Init to parent: setting the isle up failed before exec.
    SetupFailed { reason: String },
    /// Init to parent: the command could not be executed.
    ExecFailed { command: String, errno: i32, path: String },
}

/// One end of the parent/init channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A channel pair; both ends are close-on-exec, so a successful exec in the
/// isle closes init's end and the parent reads end-of-file.
pub fn channel() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| ProcessError::Sys("socketpair", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    pub fn send(&self, msg: &Message) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Message, fd: Option<RawFd>) -> Result<()> {
        let bytes = serde_json::to_vec(msg).expect("messages always serialize");
        let iov = [IoSlice::new(&bytes)];
        let fds;
        let cmsgs: Vec<ControlMessage> = match fd {
            Some(fd) => {
                fds = [fd];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => vec![],
        };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
            .map_err(|e| ProcessError::Sys("sendmsg", e))?;
        Ok(())
    }

    /// The next message, or `None` at end of file (the peer exec'd or died).
    pub fn recv(&self) -> Result<Option<(Message, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fd = None;
                    for c in m.cmsgs().map_err(|e| ProcessError::Sys("recvmsg", e))? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: the kernel just installed this descriptor for us.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (m.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ProcessError::Sys("recvmsg", e)),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| ProcessError::Protocol(format!("undecodable message from the isle: {e}")))?;
        Ok(Some((msg, fd)))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_cross() {
        let (a, b) = channel().unwrap();
        a.send(&Message::Go).unwrap();
        assert_eq!(b.recv().unwrap().unwrap().0, Message::Go);
        let devnull = std::fs::File::open("/dev/null").unwrap();
        b.send_with_fd(&Message::PtyMaster, Some(devnull.as_raw_fd())).unwrap();
        let (msg, fd) = a.recv().unwrap().unwrap();
        assert_eq!(msg, Message::PtyMaster);
        assert!(fd.is_some());
        drop(b);
        assert!(a.recv().unwrap().is_none(), "a closed peer reads as end of file");
    }
}

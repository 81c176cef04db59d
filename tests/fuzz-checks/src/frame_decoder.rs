//! Fuzzes the wire protocol's decoders with arbitrary bytes: frame headers, whole frame streams (with
//! and without payload checksums), and every control message. None may panic or allocate beyond the
//! limits; whatever decodes must re-encode to something that decodes the same.

use replbd_replication::wire::messages::{self, AuthResponse, ErrorMessage, Hello, StateReport};
use replbd_replication::wire::{FrameHeader, FrameReader, HEADER_LEN, Kind};

/// Runs every check of this target on `data`; panics on a failed check.
pub fn check(data: &[u8]) {
    if data.len() >= HEADER_LEN {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&data[..HEADER_LEN]);
        if let Ok(header) = FrameHeader::decode(&h) {
            assert_eq!(FrameHeader::decode(&header.encode()).ok(), Some(header));
        }
    }
    let _ = messages::decode::<Hello>(Kind::Hello, data);
    let _ = messages::decode::<AuthResponse>(Kind::AuthResponse, data);
    let _ = messages::decode::<ErrorMessage>(Kind::Error, data);
    if let Ok(r) = messages::decode::<StateReport>(Kind::StateReport, data) {
        let again = messages::encode(Kind::StateReport, &r);
        assert_eq!(
            messages::decode::<StateReport>(Kind::StateReport, &again.payload).ok(),
            Some(r)
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| std::process::abort());
    for integrity in [false, true] {
        rt.block_on(async {
            let mut reader = FrameReader::new(data, integrity);
            for _ in 0..64 {
                if reader.read_frame().await.is_err() {
                    break;
                }
            }
        });
    }
}

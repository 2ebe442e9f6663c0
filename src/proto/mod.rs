//! gRPC types generated from `proto/wardsync/v1`, their conversions to and
//! from [`crate::model`], and the one place where errors become status codes.

/// Generated messages, clients and servers of package `wardsync.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("wardsync.v1");
}

mod convert;
mod paging;
mod status;

pub use convert::{
    backup_to_pb, change_from_pb, key_from_pb, kind_from_pb, record_from_pb, seen_from_pb, seen_pb,
    valid_record_from_pb, versioned_from_pb,
};
pub use paging::{DEFAULT_PAGE, MAX_PAGE, cursor_in, cursor_out, next_after, page_size};

/// The encoded descriptors of every service and message, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wardsync_descriptor.bin"));

/// Version of the replication protocol spoken in `Hello`.
pub const PROTOCOL_VERSION: u32 = 2;
/// Version of the record schema carried in changes.
pub const SCHEMA_VERSION: u32 = 1;

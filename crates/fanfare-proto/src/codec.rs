//! The codec of the fanout service: prost, with a small first encode buffer per call.
//!
//! tonic allocates its encode buffer eagerly for every call and keeps it for the call's life
//! (8 KiB by default). A fanout pod holds one long-lived `Subscribe` stream per online
//! user, each sending frames of a few hundred bytes, so that default would dominate the
//! memory of an idle stream. [`STREAM_BUFFER_SIZE`] is enough for a typical frame; a larger
//! one grows the buffer in steps of that size, as tonic does.

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// First encode buffer of a fanout call, in bytes.
pub const STREAM_BUFFER_SIZE: usize = 1024;
/// How many bytes of ready frames tonic gathers into one write (its default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with a [`STREAM_BUFFER_SIZE`] encode buffer.
#[derive(Debug, Clone)]
pub struct StreamingCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for StreamingCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for StreamingCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(STREAM_BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.0.decoder()
    }
}

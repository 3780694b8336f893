//! Object data on the server side: cutting a streamed body into stored blocks, and streaming
//! byte ranges back out of a block list. Bodies are never held whole in memory: at most a few
//! blocks are in flight.

use crate::api::hashing::{block_count, block_len, BlockHash, BLOCK_SIZE};
use crate::server::error::{ApiError, ApiResult};
use crate::server::AppState;
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, Stream, StreamExt};
use md5::{Digest, Md5};
use std::sync::Arc;

/// Blocks being hashed and written at once for one upload.
const WRITES_IN_FLIGHT: usize = 3;
/// Blocks read ahead for one download.
const READ_AHEAD: usize = 3;

/// Appends `data` to the partial block in `buf`; returns the blocks it completed.
fn fill_blocks(buf: &mut BytesMut, mut data: &[u8]) -> Vec<Bytes> {
    let mut full = vec![];
    while !data.is_empty() {
        let take = (BLOCK_SIZE - buf.len()).min(data.len());
        buf.extend_from_slice(&data[..take]);
        data = &data[take..];
        if buf.len() == BLOCK_SIZE {
            full.push(std::mem::replace(buf, BytesMut::with_capacity(BLOCK_SIZE)).freeze());
        }
    }
    full
}

/// What an ingested body turned into.
pub struct Ingested {
    pub size: u64,
    pub hashes: Vec<BlockHash>,
    /// Computed only when asked for (whole-object PUTs, whose ETag Swift clients check).
    pub md5: Option<String>,
}

/// Cuts a body into blocks as it arrives, stores each (several in flight), and computes its
/// MD5. A body that ends early or errors fails the whole call; the blocks already written stay
/// unreferenced.
pub async fn ingest<S, E>(
    st: &AppState,
    account: &str,
    mut body: S,
    max_size: u64,
    want_md5: bool,
) -> ApiResult<Ingested>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // MD5 runs on its own thread so that it overlaps block hashing and writing.
    let (md5_tx, mut md5_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let md5_task = tokio::task::spawn_blocking(move || {
        let mut md5 = Md5::new();
        while let Some(c) = md5_rx.blocking_recv() {
            md5.update(&c);
        }
        hex::encode(md5.finalize())
    });
    let mut size: u64 = 0;
    let mut buf = BytesMut::with_capacity(BLOCK_SIZE);
    let mut pending = FuturesOrdered::new();
    let mut hashes = vec![];
    let store = st.store.clone();
    let spawn = |data: Bytes| {
        let (store, account) = (store.clone(), account.to_string());
        tokio::spawn(async move { store.put_block(&account, data).await })
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("Request body incomplete: {e}")))?;
        size += chunk.len() as u64;
        if size > max_size {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "Object too large",
            ));
        }
        if want_md5 && md5_tx.send(chunk.clone()).await.is_err() {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "checksum worker stopped",
            ));
        }
        for full in fill_blocks(&mut buf, &chunk) {
            pending.push_back(spawn(full));
            if pending.len() >= WRITES_IN_FLIGHT {
                if let Some(r) = pending.next().await {
                    hashes.push(r??);
                }
            }
        }
    }
    if !buf.is_empty() {
        pending.push_back(spawn(buf.freeze()));
    }
    while let Some(r) = pending.next().await {
        hashes.push(r??);
    }
    drop(md5_tx);
    Ok(Ingested {
        size,
        hashes,
        md5: Some(md5_task.await?).filter(|_| want_md5),
    })
}

/// Block `index` of an object, zero-padded to its real length.
pub async fn read_block(st: &AppState, hashes: &Arc<Vec<BlockHash>>, size: u64, index: u64) -> ApiResult<Bytes> {
    let h = hashes[index as usize];
    let want = block_len(size, index);
    let mut data = st.store.read_block(&h).await?;
    if data.len() > want {
        // A hashmap that claimed fewer bytes than its last block holds reads as its size.
        data.truncate(want);
    }
    data.resize(want, 0);
    Ok(Bytes::from(data))
}

/// Streams bytes `first..=last` of an object, reading a few blocks ahead.
pub fn range_stream(
    st: AppState,
    hashes: Arc<Vec<BlockHash>>,
    size: u64,
    first: u64,
    last: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let bs = BLOCK_SIZE as u64;
    let blocks = if size == 0 {
        0..0
    } else {
        (first / bs)..(last / bs + 1).min(block_count(size))
    };
    futures::stream::iter(blocks)
        .map(move |i| {
            let st = st.clone();
            let hashes = hashes.clone();
            async move {
                let data = read_block(&st, &hashes, size, i).await.map_err(|e| {
                    tracing::error!(status = %e.status, message = %e.message, "read of block {i} failed");
                    std::io::Error::other(e.message)
                })?;
                let start = i * bs;
                let lo = first.saturating_sub(start) as usize;
                let hi = ((last + 1 - start) as usize).min(data.len());
                Ok(data.slice(lo..hi))
            }
        })
        .buffered(READ_AHEAD)
}

/// Streams the parts of a multipart/byteranges answer: each part's header, its bytes, and
/// the closing boundary. `ranges` are inclusive, sorted and do not overlap; a block that
/// several parts fall in is read once (300 one-byte ranges in one block cost one block read,
/// not 300).
pub fn multipart_stream(
    st: AppState,
    hashes: Arc<Vec<BlockHash>>,
    size: u64,
    parts: Vec<(Bytes, u64, u64)>,
    tail: Bytes,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    enum At {
        Header(usize),
        Data(usize, u64),
        End(usize),
        Tail,
        Done,
    }
    let bs = BLOCK_SIZE as u64;
    let parts = Arc::new(parts);
    futures::stream::unfold((At::Header(0), None::<(u64, Bytes)>), move |(at, memo)| {
        let (st, hashes, parts, tail) = (st.clone(), hashes.clone(), parts.clone(), tail.clone());
        async move {
            match at {
                At::Done => None,
                At::Tail => Some((Ok(tail), (At::Done, memo))),
                At::Header(i) if i == parts.len() => Some((Ok(tail), (At::Done, memo))),
                At::Header(i) => Some((Ok(parts[i].0.clone()), (At::Data(i, parts[i].1), memo))),
                At::End(i) => {
                    let next = if i + 1 == parts.len() {
                        At::Tail
                    } else {
                        At::Header(i + 1)
                    };
                    Some((Ok(Bytes::from_static(b"\r\n")), (next, memo)))
                }
                At::Data(i, pos) => {
                    let index = pos / bs;
                    let block = match memo {
                        Some((m, b)) if m == index => b,
                        _ => match read_block(&st, &hashes, size, index).await {
                            Ok(b) => b,
                            Err(e) => {
                                tracing::error!(status = %e.status, message = %e.message, "read of block {index} failed");
                                return Some((Err(std::io::Error::other(e.message)), (At::Done, None)));
                            }
                        },
                    };
                    let last = parts[i].2;
                    let start = index * bs;
                    let hi = (last + 1).min(start + block.len() as u64);
                    let chunk = block.slice((pos - start) as usize..(hi - start) as usize);
                    let next = if hi > last { At::End(i) } else { At::Data(i, hi) };
                    Some((Ok(chunk), (next, Some((index, block)))))
                }
            }
        }
    })
}

/// Writes `data` (a stream of `len` bytes) at `offset` into an object of `size` bytes with
/// block list `hashes`, touching only the blocks the range covers. Returns the new block list
/// and size (before any truncation).
pub async fn patch<S, E>(
    st: &AppState,
    account: &str,
    hashes: Arc<Vec<BlockHash>>,
    size: u64,
    offset: u64,
    mut data: S,
    len: u64,
) -> ApiResult<(Vec<BlockHash>, u64)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let bs = BLOCK_SIZE as u64;
    let end = offset + len;
    let new_size = size.max(end);
    let first_block = offset / bs;
    let mut out: Vec<BlockHash> = hashes[..(first_block as usize).min(hashes.len())].to_vec();
    // Start with the old bytes of the first touched block that come before the offset.
    let mut buf = BytesMut::with_capacity(BLOCK_SIZE);
    if !offset.is_multiple_of(bs) {
        let old = read_block(st, &hashes, size, first_block).await?;
        buf.extend_from_slice(&old[..(offset % bs) as usize]);
    }
    let mut block_index = first_block;
    let mut received: u64 = 0;
    let store = st.store.clone();
    let put = |b: Bytes| {
        let (store, account) = (store.clone(), account.to_string());
        async move { Ok::<_, ApiError>(store.put_block(&account, b).await?) }
    };
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("Request body incomplete: {e}")))?;
        received += chunk.len() as u64;
        if received > len {
            return Err(ApiError::bad_request("Body longer than the range"));
        }
        for full in fill_blocks(&mut buf, &chunk) {
            out.push(put(full).await?);
            block_index += 1;
        }
    }
    if received != len {
        return Err(ApiError::bad_request("Body length does not match the range"));
    }
    if !buf.is_empty() {
        // Complete the last touched block with the old bytes after the range.
        let old_len = block_len(size, block_index);
        if (buf.len()) < old_len {
            let old = read_block(st, &hashes, size, block_index).await?;
            buf.extend_from_slice(&old[buf.len()..old_len]);
        }
        out.push(put(buf.freeze()).await?);
        block_index += 1;
    }
    out.extend_from_slice(hashes.get(block_index as usize..).unwrap_or(&[]));
    Ok((out, new_size))
}

/// Cuts a block list to `new_size` bytes (or extends it with zero blocks).
pub async fn truncate(
    st: &AppState,
    account: &str,
    hashes: Arc<Vec<BlockHash>>,
    size: u64,
    new_size: u64,
) -> ApiResult<Vec<BlockHash>> {
    let n = block_count(new_size) as usize;
    if new_size >= size {
        let mut out = hashes.to_vec();
        // Bytes past the old end read as zeros: stored blocks are padded with zeros on read.
        out.resize(n, BlockHash::empty());
        return Ok(out);
    }
    let mut out = hashes[..n].to_vec();
    let tail = (new_size % BLOCK_SIZE as u64) as usize;
    if tail != 0 {
        let last = read_block(st, &hashes, size, (n - 1) as u64).await?.slice(..tail);
        out[n - 1] = st.store.put_block(account, last).await?;
    }
    Ok(out)
}

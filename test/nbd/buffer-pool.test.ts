import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/nbd/buffer-pool.ts';

test('buffers come in power-of-two classes and are reused once released', () => {
  const pool = new BufferPool();
  const a = pool.acquire(5000);
  assert.equal(a.length, 8192);
  pool.release(a);
  assert.equal(pool.idleBytes, 8192);
  assert.equal(pool.acquire(8000), a, 'the released buffer is handed out again');
  assert.equal(pool.idleBytes, 0);
  assert.equal(pool.acquire(1).length, 4096, 'nothing smaller than 4 KiB');
});

test('large reply buffers live in shared memory so ZFile decode threads can fill them in place', () => {
  const pool = new BufferPool();
  assert.ok(!(pool.acquire(32 * 1024).buffer instanceof SharedArrayBuffer), 'small ones need not be');
  for (const size of [64 * 1024, 1 << 20, 32 << 20]) {
    const b = pool.acquire(size);
    assert.ok(b.buffer instanceof SharedArrayBuffer, `${size}`);
    assert.equal(b.byteOffset, 0);
    assert.ok(Buffer.isBuffer(b));
  }
});

test('idle bytes are capped; buffers beyond the cap or not from the pool are dropped', () => {
  const pool = new BufferPool(64 * 1024);
  const bufs = [pool.acquire(65536), pool.acquire(65536)];
  for (const b of bufs) pool.release(b);
  assert.equal(pool.idleBytes, 65536);
  pool.release(Buffer.alloc(5000));
  pool.release(Buffer.alloc(1024));
  assert.equal(pool.idleBytes, 65536);
});

/**
 * The pass-through Disk: a disk filter (trace recording, a read counter, a fault injector)
 * extends it, overrides what it changes and inherits the rest with the capabilities of `next`,
 * as an nbdkit filter does. A filter that observes reads overrides `read` and `readMapped` (both
 * are reads; the shared disk suite checks they agree).
 */
import type { Disk, DiskCaps, DiskExtent } from '../io/types.ts';

export class DiskFilter implements Disk {
  constructor(protected readonly next: Disk) {}

  get size(): number {
    return this.next.size;
  }

  get writable(): boolean {
    return this.next.writable;
  }

  get caps(): DiskCaps {
    return this.next.caps;
  }

  read(dst: Uint8Array, offset: number): Promise<void> {
    return this.next.read(dst, offset);
  }

  write(src: Uint8Array, offset: number): Promise<void> {
    return this.next.write(src, offset);
  }

  trim(offset: number, length: number): Promise<void> {
    return this.next.trim(offset, length);
  }

  flush(): Promise<void> {
    return this.next.flush();
  }

  close(): Promise<void> {
    return this.next.close();
  }

  extents(offset: number, length: number): Promise<DiskExtent[]> {
    if (!this.next.extents) return Promise.reject(new Error('extents: not supported by the disk below (caps.extents is false)'));
    return this.next.extents(offset, length);
  }

  readMapped(dst: Uint8Array, offset: number): Promise<DiskExtent[]> {
    if (!this.next.readMapped) return Promise.reject(new Error('readMapped: not supported by the disk below (caps.readMapped is false)'));
    return this.next.readMapped(dst, offset);
  }
}

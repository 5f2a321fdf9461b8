/**
 * Snapshotter errors carry the containerd error class they map to (errdefs: NotFound,
 * AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable), which the gRPC layer turns
 * into the status code containerd turns back into that class.
 */
export type SnapshotErrorCode = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument' | 'Unavailable' | 'Internal';

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
  constructor(readonly code: SnapshotErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export const notFound = (what: string): SnapshotError => new SnapshotError('NotFound', `${what}: not found`);

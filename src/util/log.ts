import { pino, type Logger } from 'pino';

/** The process-wide logger: JSON lines on stderr, level from $DADI_LOG_LEVEL (default info). */
export const log: Logger = pino(
  { name: 'dadi', level: process.env.DADI_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
  pino.destination({ dest: 2, sync: true }),
);

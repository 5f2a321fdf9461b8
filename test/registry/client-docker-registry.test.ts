import { requireSystem } from '../helpers/env.ts';
import { startDockerRegistry } from '../helpers/registry.ts';
import { pushPullSuite } from './push-pull-suite.ts';

pushPullSuite('docker-registry', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return undefined;
  return startDockerRegistry(t);
});

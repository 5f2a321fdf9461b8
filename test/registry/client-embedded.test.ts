import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { pushPullSuite } from './push-pull-suite.ts';

pushPullSuite('embedded registry', (t) => startEmbeddedRegistry(t));

import { sweepTest } from './sweep.js';

sweepTest(3);

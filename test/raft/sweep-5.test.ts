import { sweepTest } from './sweep.js';

sweepTest(5);

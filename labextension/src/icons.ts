import { LabIcon } from '@jupyterlab/ui-components';

import runsSvg from '../style/icons/runs.svg';

/** The sidebar's and the run panels' icon: a rising curve on axes. */
export const runsIcon = new LabIcon({ name: 'jupyter-ext:runs', svgstr: runsSvg });

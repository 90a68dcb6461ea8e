// uPlot's stylesheet as text, for the notebook widget (the lab extension loads it through
// style/index.css). The widget bundle loads .css files as text (scripts/build-widget.js).
import css from 'uplot/dist/uPlot.min.css';

export default css;

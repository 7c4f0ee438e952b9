"""Flex Template entry point: launch the label job (``pipelines.label``) with the template's parameters.

Dataflow's launcher runs this file with the template parameters as ``--name=value`` options plus
the pipeline options it adds (``--runner``, ``--project``, ``--region``, ``--temp_location``, ...);
``pipelines.label`` parses its own options and passes the rest to Beam.
"""

import logging
import sys

from pipelines import label

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(label.main(sys.argv[1:]))

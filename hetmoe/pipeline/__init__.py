"""The whole pipeline in one call (:mod:`hetmoe.pipeline.run`) and its commands (:mod:`hetmoe.commands.pipeline`)."""

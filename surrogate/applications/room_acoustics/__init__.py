"""Sound in rooms from the source position in milliseconds (Borrel-Jensen et al. 2024):
`SourceDeepONet`, the image sources its trunk may see, and `train_surrogate`."""

from ._deeponet import SOURCE_FEATURES as SOURCE_FEATURES
from ._deeponet import SourceDeepONet as SourceDeepONet
from ._deeponet import image_orbits as image_orbits
from ._deeponet import image_sources as image_sources
from ._deeponet import rms as rms
from ._deeponet import scaled as scaled
from ._deeponet import train_surrogate as train_surrogate

"""Every error selfie-tvm raises on bad input: specific, with what to do next."""


class SelfieTvmError(Exception):
    """Base class: messages are meant for end users."""


class RegistryError(SelfieTvmError):
    pass


class ModelNotFoundError(SelfieTvmError):
    pass


class ModelDownloadError(SelfieTvmError):
    pass


class ChecksumMismatchError(ModelDownloadError):
    pass


class ImageError(SelfieTvmError):
    pass


class ImageNotFoundError(ImageError):
    pass


class UnsupportedImageFormatError(ImageError):
    pass


class CorruptImageError(ImageError):
    pass


class ImageTooLargeError(ImageError):
    pass


class ColorError(SelfieTvmError):
    pass


class EngineError(SelfieTvmError):
    pass


class TargetError(SelfieTvmError):
    pass


class CommandUnavailableError(SelfieTvmError):
    """A CLI verb whose module could not be imported (its optional dependencies are missing)."""


class ModelFileError(SelfieTvmError):
    """A .tflite file selfie-tvm cannot use: not TFLite, or not an image-in, mask-out model."""

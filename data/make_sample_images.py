"""Draw the small sample images in data/ (own work, CC0). Run: python data/make_sample_images.py"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent


def radiograph(path: Path, blob: tuple[int, int, int, int] | None) -> None:
    image = Image.new("L", (160, 160), 10)
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 75, 140), fill=70)
    draw.ellipse((85, 20, 140, 140), fill=70)
    draw.rectangle((74, 15, 86, 150), fill=180)
    if blob:
        draw.ellipse(blob, fill=160)
    image.filter(ImageFilter.GaussianBlur(3)).save(path)


def product(path: Path, colour: str, shape: str) -> None:
    image = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(image)
    if shape == "shirt":
        draw.polygon([(34, 30), (94, 30), (114, 50), (100, 60), (94, 54), (94, 110), (34, 110), (34, 54), (28, 60), (14, 50)], fill=colour)
    elif shape == "bag":
        draw.rectangle((24, 50, 104, 108), fill=colour)
        draw.arc((44, 24, 84, 70), 180, 360, fill=colour, width=6)
    elif shape == "shoe":
        draw.polygon([(14, 80), (60, 60), (84, 72), (114, 84), (114, 96), (14, 96)], fill=colour)
    else:
        draw.rounded_rectangle((30, 24, 98, 112), radius=16, fill=colour)
    image.save(path)


if __name__ == "__main__":
    radiograph(HERE / "medical/images/chest-xray-consolidation.png", (95, 90, 130, 130))
    radiograph(HERE / "medical/images/head-ct-normal.png", None)
    radiograph(HERE / "medical/images/knee-mri-effusion.png", (50, 50, 110, 110))
    product(HERE / "retail/images/navy-shirt.png", "navy", "shirt")
    product(HERE / "retail/images/red-handbag.png", "red", "bag")
    product(HERE / "retail/images/black-shoes.png", "black", "shoe")
    product(HERE / "retail/images/grey-backpack.png", "grey", "backpack")
